"""A run's governance record over HTTP — ``/runs/{id}/audit``, ``/evaluation``,
``/trace`` — the tenant's stored reconciliations, and ``/metrics`` after a sweep.

The kernel here runs on a clock the test moves, with no liveness grace, so a queued run
with nobody to execute it goes past its deadline without the test sleeping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import STANDARD_EXPECTATIONS
from support.governance_api import MovableClock, api, bearer, finish, submit

STANDARD = sorted(f"{domain}/{action}" for domain, action in STANDARD_EXPECTATIONS)
HOUR_MS = 3_600_000


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def kernel(database_url: str, clock: MovableClock) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url, grace_period_ms=0), clock=clock)
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with api(kernel) as test_client:
        yield test_client


def get(client: TestClient, tenant: TenantContext, path: str, **params: Any) -> Any:
    return client.get(path, params=params, headers=bearer(tenant.api_key))


def stale_run(client: TestClient, tenant: TenantContext, clock: MovableClock) -> str:
    """A run nobody executes, moved past its deadline (timeout 10 ms, no grace)."""
    run_id = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN, budget={"timeout_s": 0.01})
    clock.advance(1000)
    return run_id


def metric(client: TestClient, sample: str) -> float | None:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else None


def test_a_finished_run_has_a_clean_audit_an_evaluation_and_a_trace(
    kernel: Kernel, client: TestClient, tenant: TenantContext, clock: MovableClock
) -> None:
    run_id = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN)
    [run] = finish(kernel, client, tenant.api_key, [run_id])

    audit = get(client, tenant, f"/api/v1/runs/{run_id}/audit").json()
    assert sorted(f"{e['domain']}/{e['action']}" for e in audit["expectations"]) == STANDARD
    assert sorted(f"{a['domain']}/{a['action']}" for a in audit["acks"]) == STANDARD
    assert {a["status"] for a in audit["acks"]} == {"SUCCESS"}
    # Not swept yet (issue 6 point 14): each expectation shows ACKED as soon as its ack
    # exists, at the ack's time.
    acked_at = {(a["domain"], a["action"]): a["created_at"] for a in audit["acks"]}
    assert {e["status"] for e in audit["expectations"]} == {"ACKED"}
    assert {(e["domain"], e["action"]): e["acked_at"] for e in audit["expectations"]} == acked_at
    live = audit["reconciliation"]
    assert (live["status"], live["clean"], live["missing"], live["drift"]) == (
        "COMPLETE",
        True,
        [],
        [],
    )
    assert (live["expected_count"], live["acked_count"]) == (5, 5)
    assert audit["stored"] is None

    evaluation = get(client, tenant, f"/api/v1/runs/{run_id}/evaluation").json()
    assert (evaluation["run_id"], evaluation["outcome"], evaluation["violations"]) == (
        run_id,
        "PASS",
        [],
    )
    trace = get(client, tenant, f"/api/v1/runs/{run_id}/trace").json()
    assert (trace["status"], trace["sink_error"]) == ("completed", None)
    assert trace["completed_at"] is not None
    assert [s["step_id"] for s in trace["spans"]] == [s["step_id"] for s in run["steps"]]
    assert sum(s["usage"]["input_tokens"] for s in trace["spans"]) == run["usage"]["input_tokens"]

    clock.advance(2 * HOUR_MS)  # past the default run timeout: the sweep takes it
    assert [r.run_id for r in kernel.reconciler.sweep()] == [run_id]
    audit = get(client, tenant, f"/api/v1/runs/{run_id}/audit").json()
    assert audit["stored"]["status"] == "COMPLETE"
    assert {e["status"] for e in audit["expectations"]} == {"ACKED"}
    assert metric(client, 'runkernel_reconciliations_total{status="COMPLETE"}') == 1.0


def test_a_run_nobody_executes_is_stale_live_then_stored_flagged_and_counted(
    kernel: Kernel, client: TestClient, tenant: TenantContext, clock: MovableClock
) -> None:
    run_id = stale_run(client, tenant, clock)
    live = get(client, tenant, f"/api/v1/runs/{run_id}/audit").json()
    assert live["reconciliation"]["status"] == "STALE"
    assert live["reconciliation"]["stale_run"] is True
    assert live["reconciliation"]["missing"] == STANDARD
    assert live["acks"] == [] and live["stored"] is None
    assert metric(client, 'runkernel_reconciliations_total{status="STALE"}') is None

    [result] = kernel.reconciler.sweep()
    assert (result.run_id, result.status.value) == (run_id, "STALE")

    audit = get(client, tenant, f"/api/v1/runs/{run_id}/audit").json()
    assert audit["stored"]["status"] == "STALE" and audit["stored"]["missing"] == STANDARD
    assert {e["status"] for e in audit["expectations"]} == {"MISSING"}
    stored = get(client, tenant, "/api/v1/audit/reconciliations", status="STALE").json()
    assert [r["run_id"] for r in stored["reconciliations"]] == [run_id]
    assert get(client, tenant, "/api/v1/audit/reconciliations", status="COMPLETE").json() == {
        "reconciliations": []
    }
    incidents = get(client, tenant, "/api/v1/incidents", category="STALE_RUN").json()
    assert [i["run_id"] for i in incidents["incidents"]] == [run_id]

    assert metric(client, 'runkernel_reconciliations_total{status="STALE"}') == 1.0
    assert metric(client, "runkernel_stale_runs_total") == 1.0
    finalize = 'runkernel_audit_missing_total{action="finalize_run",domain="orchestrator"}'
    assert metric(client, finalize) == 1.0
    assert kernel.reconciler.sweep() == []  # once per run, not at every sweep
    assert metric(client, 'runkernel_reconciliations_total{status="STALE"}') == 1.0


def test_metrics_need_no_key_and_speak_the_prometheus_text_format(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE runkernel_reconciliations_total counter" in response.text


def test_evaluation_and_trace_are_409_until_the_run_has_them(
    client: TestClient, tenant: TenantContext
) -> None:
    run_id = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN)
    evaluation = get(client, tenant, f"/api/v1/runs/{run_id}/evaluation")
    assert (evaluation.status_code, evaluation.json()["error"]["code"]) == (
        409,
        "evaluation_pending",
    )
    assert "queued" in evaluation.json()["error"]["message"]
    trace = get(client, tenant, f"/api/v1/runs/{run_id}/trace")
    assert (trace.status_code, trace.json()["error"]["code"]) == (409, "trace_pending")


def test_another_tenants_run_record_is_404_and_its_results_are_invisible(
    kernel: Kernel, client: TestClient, tenant: TenantContext, clock: MovableClock
) -> None:
    run_id = stale_run(client, tenant, clock)
    kernel.reconciler.sweep()
    intruder = make_tenant(kernel)
    for part in ("audit", "evaluation", "trace"):
        answer = get(client, intruder, f"/api/v1/runs/{run_id}/{part}")
        # "not_found", never a code that would tell the run exists
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found"), part
    for status in ("STALE", None):
        params = {"status": status} if status else {}
        listed = get(client, intruder, "/api/v1/audit/reconciliations", **params).json()
        assert listed == {"reconciliations": []}
    mine = get(client, tenant, "/api/v1/audit/reconciliations").json()["reconciliations"]
    assert [r["run_id"] for r in mine] == [run_id]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/audit/reconciliations", {"status": "DONE"}, 422),
        ("/api/v1/audit/reconciliations", {"limit": 0}, 422),
        ("/api/v1/runs/run_unknown/audit", {}, 404),
        ("/api/v1/runs/run_unknown/evaluation", {}, 404),
        ("/api/v1/runs/run_unknown/trace", {}, 404),
        ("/api/v1/runs/no%20such/audit", {}, 404),
    ],
)
def test_bad_requests_get_the_error_shape(
    client: TestClient, tenant: TenantContext, path: str, params: dict[str, Any], status: int
) -> None:
    response = get(client, tenant, path, **params)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message"}


def test_the_audit_endpoints_need_a_key(client: TestClient) -> None:
    for path in ("/api/v1/runs/run_x/audit", "/api/v1/audit/reconciliations"):
        assert client.get(path).status_code == 401
