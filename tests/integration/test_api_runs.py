"""The run endpoints end to end through the HTTP layer: submit (202), a worker executes,
the run reads back with its transitions and steps; idempotency, pagination and cancel."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, auth, make_tenant
from runkernel.bootstrap import Kernel
from runkernel.entrypoints.worker import WorkerPool
from support.workers import wait_until


def submit(client: TestClient, tenant: TenantContext, **extra: Any) -> Any:
    body = {"agent_id": tenant.agent.id, "plan": ECHO_PLAN, **extra}
    return client.post("/api/v1/runs", json=body, headers=auth(tenant))


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def test_a_submitted_run_executes_and_reads_back_with_steps(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    response = submit(client, tenant, budget={"max_cost_usd": 1.5, "max_steps": 10})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["phase"] == "AUTHORIZED"
    assert response.headers["location"].endswith(f"/api/v1/runs/{accepted['id']}")

    pool = WorkerPool(kernel, concurrency=2).start()
    try:
        location = response.headers["location"]

        def final_run() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(location, headers=auth(tenant)).json()
            return run if run["phase"] in ("COMPLETED", "FAILED") else None

        run = wait_until(final_run, timeout=30, what="the run to finish")
        assert run is not None
    finally:
        pool.stop(drain_timeout_s=5)

    assert (run["status"], run["phase"], run["error"]) == ("succeeded", "COMPLETED", None)
    assert run["attempt"] == 1
    assert [s["step_id"] for s in run["steps"]] == ["ask", "pick", "again"]
    assert all(s["status"] == "succeeded" and s["error"] is None for s in run["steps"])
    assert run["steps"][0]["usage"]["input_tokens"] > 0
    assert run["usage"]["input_tokens"] == sum(s["usage"]["input_tokens"] for s in run["steps"])
    assert run["cost_usd"] == run["cost_micros"] / 1_000_000
    assert "hello governed world" in json.dumps(run["output"])
    assert run["budget"]["max_cost_usd"] == 1.5 and run["budget"]["max_steps"] == 10
    first, last = run["transitions"][0], run["transitions"][-1]
    assert (first["from_phase"], first["to_phase"]) == (None, "CREATED")
    assert (last["to_phase"], last["to_status"]) == ("COMPLETED", "succeeded")
    created, started, finished = (
        parse_time(run[k]) for k in ("created_at", "started_at", "finished_at")
    )
    assert created <= started <= finished


def test_an_idempotent_repeat_returns_the_same_run_with_200(
    client: TestClient, tenant: TenantContext
) -> None:
    first = submit(client, tenant, idempotency_key="order-42")
    again = submit(client, tenant, idempotency_key="order-42")
    other = submit(client, tenant, idempotency_key="order-43")
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    listed = client.get("/api/v1/runs", headers=auth(tenant)).json()["runs"]
    assert len(listed) == 2


def test_cursor_pagination_walks_every_run_exactly_once(
    client: TestClient, tenant: TenantContext
) -> None:
    submitted = [submit(client, tenant).json()["id"] for _ in range(7)]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/runs", params=params, headers=auth(tenant)).json()
        pages += 1
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(submitted))  # newest first, each once


def test_filters_by_status_and_agent(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    kept, cancelled = submit(client, tenant).json()["id"], submit(client, tenant).json()["id"]
    client.post(f"/api/v1/runs/{cancelled}/cancel", headers=auth(tenant))
    other_agent = client.post(
        "/api/v1/agents", json={"name": "other", "budget_usd": 1}, headers=auth(tenant)
    ).json()["id"]

    def ids(**params: str) -> list[str]:
        page = client.get("/api/v1/runs", params=params, headers=auth(tenant)).json()
        return [r["id"] for r in page["runs"]]

    assert ids(status="cancelled") == [cancelled]
    assert ids(status="queued") == [kept]
    assert ids(agent_id=tenant.agent.id) == [cancelled, kept]
    assert ids(agent_id=other_agent) == []


def test_cancel_of_a_queued_run_is_final_and_a_second_cancel_is_409(
    client: TestClient, tenant: TenantContext
) -> None:
    run_id = submit(client, tenant).json()["id"]
    cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(tenant))
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert (body["status"], body["phase"]) == ("cancelled", "FAILED")
    assert body["finished_at"] is not None
    again = client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(tenant))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_already_final"


def test_a_run_of_an_agent_without_budget_is_accepted_as_failed_policy(
    kernel: Kernel, client: TestClient
) -> None:
    broke = make_tenant(kernel, budget_usd=0)
    response = submit(client, broke)
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["phase"]) == ("failed_policy", "FAILED")
    run = client.get(response.headers["location"], headers=auth(broke)).json()
    assert run["error"]["code"] == "agent_budget_exhausted"


def test_a_run_reads_back_with_its_plan_as_validated(
    client: TestClient, tenant: TenantContext
) -> None:
    run_id = submit(client, tenant).json()["id"]
    run = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant)).json()
    steps = run["plan"]["steps"]
    assert [s["step_id"] for s in steps] == [s["step_id"] for s in ECHO_PLAN["steps"]]
    assert steps[0]["params"] == ECHO_PLAN["steps"][0]["params"]
    # Defaults the submission left out are filled in: the plan the worker runs.
    assert (steps[0]["on_error"], steps[0]["retries"], steps[0]["output_key"]) == ("abort", 0, None)
    assert steps[2]["output_key"] == "answer"
