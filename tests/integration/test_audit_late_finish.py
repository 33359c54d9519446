"""Issue 6 point 14: the stored audit verdict and the live one never disagree.

- A run the sweep stored STALE and that then finishes (executed late, or cancelled while
  still queued) has its stored reconciliation re-evaluated in its completion transaction
  — COMPLETE, as the live one — and its STALE_RUN incident RESOLVED with a note and an
  ``incident.resolved`` event.
- A sweep racing a completion waits for it and judges the finished run, instead of
  storing STALE from a read taken before the completion committed.
- The audit view shows an expectation ACKED, with its ``acked_at``, as soon as its ack
  exists — before any sweep.

The kernel's clock is one the test moves (no grace period), so deadlines pass at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, make_settings, make_tenant
from runkernel.adapters.db.tables import outbox
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import ReconciliationResult, ReconciliationStatus
from runkernel.domain.incidents import Category, IncidentStatus
from runkernel.entrypoints.governance_services import GovernanceServices
from runkernel.services.ports import AuditStore
from support.governance import claim_run, drive
from support.governance_api import MovableClock, api, bearer

HOURS_2 = 2 * 3_600_000  # past the default run timeout (1 h) with no grace


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


def submit(kernel: Kernel, tenant: TenantContext) -> str:
    return kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN).run.id


def swept_stale(kernel: Kernel, clock: MovableClock, run_id: str) -> None:
    clock.advance(HOURS_2)
    [result] = kernel.reconciler.sweep()
    assert (result.run_id, result.status) == (run_id, ReconciliationStatus.STALE)
    [incident] = incidents_of(kernel, run_id)
    assert (incident.category, incident.status) == (Category.STALE_RUN, IncidentStatus.ACTIVE)


def incidents_of(kernel: Kernel, run_id: str) -> list[Any]:
    with kernel.uow(read_only=True) as uow:
        return uow.incidents.for_run(run_id)


def outbox_payloads(kernel: Kernel, run_id: str, topic: str) -> list[Any]:
    with kernel.uow(read_only=True) as uow:
        found = uow.connection.execute(
            select(outbox.c.payload).where(outbox.c.run_id == run_id, outbox.c.topic == topic)
        )
        return [row.payload for row in found]


def stored(store: AuditStore, run_id: str) -> ReconciliationResult:
    result = store.reconciliation(run_id)
    assert result is not None, f"no stored reconciliation of {run_id}"
    return result


def verdict(result: ReconciliationResult | None) -> tuple[Any, ...]:
    """What a verdict says, without when it was reached."""
    assert result is not None
    return (
        result.status,
        result.missing_actions,
        result.drift_actions,
        result.failed_actions,
        result.stale_run,
        result.expected_count,
        result.acked_count,
    )


def assert_agree_and_clean(
    kernel: Kernel, client: TestClient, tenant: TenantContext, run_id: str
) -> None:
    live = kernel.reconciler.reconcile_now(run_id)
    assert verdict(stored(kernel.audit, run_id)) == verdict(live)
    assert stored(kernel.audit, run_id).status is ReconciliationStatus.COMPLETE
    audit = client.get(f"/api/v1/runs/{run_id}/audit", headers=bearer(tenant.api_key)).json()
    assert audit["stored"]["status"] == audit["reconciliation"]["status"] == "COMPLETE"
    assert {e["status"] for e in audit["expectations"]} == {"ACKED"}
    listed = client.get(
        "/api/v1/audit/reconciliations", params={"status": "STALE"}, headers=bearer(tenant.api_key)
    ).json()
    assert listed == {"reconciliations": []}


def assert_stale_incident_resolved(kernel: Kernel, run_id: str, status: str) -> None:
    stale = [i for i in incidents_of(kernel, run_id) if i.category is Category.STALE_RUN]
    [incident] = stale
    assert incident.status is IncidentStatus.RESOLVED and incident.resolved_at_ms is not None
    assert f"resolved: the run finished ({status}) after the audit sweep flagged it stale" in (
        incident.detail
    )
    assert "re-evaluated at completion, is COMPLETE" in incident.detail
    assert "missing actions:" in incident.detail  # the original finding stays
    [payload] = outbox_payloads(kernel, run_id, "incident.resolved")
    assert (payload["incident_id"], payload["resolved_by"]) == (incident.id, "runkernel")
    assert not [i for i in incidents_of(kernel, run_id) if i.category is Category.AUDIT_MISSING]


def test_a_run_executed_after_the_sweep_called_it_stale_is_judged_again(
    kernel: Kernel, client: TestClient, clock: MovableClock
) -> None:
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    swept_stale(kernel, clock, run_id)

    drive(kernel, run_id)
    assert kernel.runs.get(tenant.principal, run_id).status.value == "succeeded"
    assert_agree_and_clean(kernel, client, tenant, run_id)
    assert_stale_incident_resolved(kernel, run_id, "succeeded")
    assert kernel.reconciler.sweep() == []  # nothing left for the sweep


def test_a_stale_queued_run_that_is_cancelled_is_judged_again(
    kernel: Kernel, client: TestClient, clock: MovableClock
) -> None:
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    swept_stale(kernel, clock, run_id)

    answer = client.post(f"/api/v1/runs/{run_id}/cancel", headers=bearer(tenant.api_key))
    assert answer.json()["status"] == "cancelled"
    assert_agree_and_clean(kernel, client, tenant, run_id)
    assert_stale_incident_resolved(kernel, run_id, "cancelled")


def test_a_run_never_swept_finishes_with_no_stored_verdict(
    kernel: Kernel, client: TestClient
) -> None:
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    drive(kernel, run_id)
    assert kernel.audit.reconciliation(run_id) is None
    assert incidents_of(kernel, run_id) == []


def test_a_sweep_racing_a_completion_judges_the_finished_run(
    kernel: Kernel, client: TestClient, clock: MovableClock
) -> None:
    """The sweep starts while the completion's transaction is open (paused just before
    its commit): it must wait for it and judge what it committed, not store STALE from a
    read taken before."""
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    clock.advance(HOURS_2)  # past the deadline: the run is the sweep's to judge
    assert kernel.audit.get_pending_run_ids(clock.now_ms()) == [run_id]
    swept: list[list[ReconciliationResult]] = []
    sweeper = threading.Thread(target=lambda: swept.append(kernel.reconciler.sweep()))

    def before_commit(point: str) -> None:
        if point == "commit" and not sweeper.is_alive() and not swept:
            sweeper.start()
            time.sleep(0.5)  # lets the sweep reach its read; it must block there

    kernel.completion.fault = before_commit
    drive(kernel, run_id)
    sweeper.join(timeout=30)
    assert not sweeper.is_alive()
    [[result]] = swept
    assert (result.run_id, result.status) == (run_id, ReconciliationStatus.COMPLETE)
    assert incidents_of(kernel, run_id) == []
    assert_agree_and_clean(kernel, client, tenant, run_id)


def test_the_audit_view_shows_an_ack_at_once_before_any_sweep(
    kernel: Kernel, client: TestClient
) -> None:
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    claim_run(kernel, run_id, "test-worker")  # opens the trace: logs/start_trace is acked
    audit = client.get(f"/api/v1/runs/{run_id}/audit", headers=bearer(tenant.api_key)).json()
    [ack] = audit["acks"]
    assert (ack["domain"], ack["action"]) == ("logs", "start_trace")
    shown = {
        f"{e['domain']}/{e['action']}": (e["status"], e["acked_at"]) for e in audit["expectations"]
    }
    assert shown.pop("logs/start_trace") == ("ACKED", ack["created_at"])
    assert set(shown.values()) == {("PENDING", None)}
    assert audit["stored"] is None
    # The operator's view (`runkernel audit`) is the same service.
    record = GovernanceServices.of(kernel).audit.inspect(run_id)
    acked = [e for e in record.expectations if e.acked_at_ms is not None]
    assert [(e.action, e.status.value) for e in acked] == [("start_trace", "ACKED")]


# -- a store outside the database (memory here; Redis takes the same path) ---------------


@pytest.fixture
def mkernel(database_url: str, clock: MovableClock) -> Iterator[Kernel]:
    settings = make_settings(database_url, grace_period_ms=0, mode="local", audit_store="memory")
    k = build_kernel(settings, clock=clock)
    k.migrate()
    assert k.ack_forwarder is not None
    yield k
    k.close()


def test_with_another_store_the_verdict_follows_the_forwarded_acks(
    mkernel: Kernel, clock: MovableClock
) -> None:
    kernel = mkernel
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    swept_stale(kernel, clock, run_id)

    drive(kernel, run_id)
    assert verdict(kernel.audit.reconciliation(run_id)) == verdict(
        kernel.reconciler.reconcile_now(run_id)
    )
    assert stored(kernel.audit, run_id).status is ReconciliationStatus.COMPLETE
    [incident] = incidents_of(kernel, run_id)
    assert incident.status is IncidentStatus.RESOLVED
    assert "re-evaluated once its acks reach the audit store" in incident.detail


def test_with_another_store_a_failed_refresh_is_retried_by_the_forwarder_loop(
    mkernel: Kernel, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = mkernel
    forwarder = kernel.ack_forwarder
    assert forwarder is not None
    tenant = make_tenant(kernel)
    run_id = submit(kernel, tenant)
    swept_stale(kernel, clock, run_id)
    store = kernel.audit
    original = type(store).save_reconciliation
    away = {"now": True}

    def flaky(self: Any, result: Any, tenant_id: Any, *, replace: bool = False) -> bool:
        if away["now"]:
            raise RuntimeError("injected: the store is away")
        return original(self, result, tenant_id, replace=replace)

    monkeypatch.setattr(type(store), "save_reconciliation", flaky)
    drive(kernel, run_id)
    assert stored(store, run_id).status is ReconciliationStatus.STALE
    with kernel.uow(read_only=True) as uow:
        assert {a.run_id for a in uow.audit.pending_hand_offs()} == {run_id}

    away["now"] = False
    assert forwarder.forward_once() > 0
    assert verdict(store.reconciliation(run_id)) == verdict(kernel.reconciler.reconcile_now(run_id))
    assert stored(store, run_id).status is ReconciliationStatus.COMPLETE
    with kernel.uow(read_only=True) as uow:
        assert uow.audit.pending_hand_offs() == []
