"""An idempotency key is bound to the request it first came with: the same request again
answers 200 with the same run, a different one 409 ``idempotency_conflict`` — in the
plain path, in the race path (the insert loses to a concurrent submission), on both
databases. Runs stored before fingerprints existed keep the old answer."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext
from runkernel.adapters.db.repositories import SqlRunRepository
from runkernel.adapters.db.tables import runs
from runkernel.bootstrap import Kernel
from runkernel.domain.records import Run
from runkernel.errors import ConflictError

KEY = "order-42"


def post(client: TestClient, tenant: TenantContext, body: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/runs", json=body, headers={"Authorization": f"Bearer {tenant.api_key}"}
    )


def request(tenant: TenantContext, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent_id": tenant.agent.id,
        "plan": copy.deepcopy(ECHO_PLAN),
        "budget": {"max_cost_usd": 0.5, "max_steps": 5},
        "metadata": {"order": 42},
        "idempotency_key": KEY,
    }
    body.update(changes)
    return body


def run_count(kernel: Kernel) -> int:
    with kernel.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def other_agent(client: TestClient, tenant: TenantContext) -> str:
    response = client.post(
        "/api/v1/agents",
        json={"name": "other", "budget_usd": 10},
        headers={"Authorization": f"Bearer {tenant.api_key}"},
    )
    return str(response.json()["id"])


def spelled_differently(tenant: TenantContext) -> dict[str, Any]:
    """The same request with the plan's defaults written out."""
    plan = copy.deepcopy(ECHO_PLAN)
    for step in plan["steps"]:
        step.setdefault("on_error", "abort")
        step.setdefault("retries", 0)
    return request(tenant, plan=plan, budget={"max_cost_usd": 0.50, "max_steps": 5})


def test_the_same_request_again_returns_the_same_run(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    first = post(client, tenant, request(tenant))
    again = post(client, tenant, request(tenant))
    respelled = post(client, tenant, spelled_differently(tenant))
    assert (first.status_code, again.status_code, respelled.status_code) == (202, 200, 200)
    assert first.json()["id"] == again.json()["id"] == respelled.json()["id"]
    assert run_count(kernel) == 1


CHANGES: dict[str, Any] = {
    "plan": lambda t: {"plan": {"steps": [ECHO_PLAN["steps"][0]]}},
    "budget": lambda t: {"budget": {"max_cost_usd": 0.6, "max_steps": 5}},
    "no budget": lambda t: {"budget": None},
    "metadata": lambda t: {"metadata": {"order": 43}},
    "no metadata": lambda t: {"metadata": None},
}


@pytest.mark.parametrize("change", [*CHANGES, "agent"])
def test_the_key_with_a_different_request_is_409(
    kernel: Kernel, client: TestClient, tenant: TenantContext, change: str
) -> None:
    original = post(client, tenant, request(tenant))
    assert original.status_code == 202
    if change == "agent":
        changed = request(tenant, agent_id=other_agent(client, tenant))
    else:
        changed = request(tenant, **CHANGES[change](tenant))
    response = post(client, tenant, changed)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert repr(KEY) in error["message"] and original.json()["id"] in error["message"]
    assert run_count(kernel) == 1
    # The original request is still answered as before.
    assert post(client, tenant, request(tenant)).status_code == 200


def lose_the_race(monkeypatch: pytest.MonkeyPatch) -> list[Run | None]:
    """Make the first idempotency lookup miss, as if a concurrent submission committed
    between it and the insert: the insert then hits the unique key (the race path)."""
    real = SqlRunRepository.find_by_idempotency_key
    seen: list[Run | None] = []

    def first_lookup_misses(self: SqlRunRepository, tenant_id: str, key: str) -> Run | None:
        found = real(self, tenant_id, key)
        seen.append(found)
        return None if len(seen) == 1 else found

    monkeypatch.setattr(SqlRunRepository, "find_by_idempotency_key", first_lookup_misses)
    return seen


@pytest.mark.parametrize("same", [True, False], ids=["same-request", "different-request"])
def test_the_race_path_tells_the_same_request_from_a_different_one(
    kernel: Kernel,
    client: TestClient,
    tenant: TenantContext,
    monkeypatch: pytest.MonkeyPatch,
    same: bool,
) -> None:
    winner = post(client, tenant, request(tenant))
    assert winner.status_code == 202
    seen = lose_the_race(monkeypatch)
    response = post(client, tenant, request(tenant, metadata={"order": 42 if same else 7}))
    assert seen and seen[0] is not None, "the race path was not taken"
    if same:
        assert response.status_code == 200 and response.json()["id"] == winner.json()["id"]
    else:
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "idempotency_conflict"
    assert run_count(kernel) == 1


def test_concurrent_submissions_of_different_requests_create_one_run(
    kernel: Kernel, tenant: TenantContext
) -> None:
    start = threading.Barrier(4)
    answers: list[tuple[int, str]] = []

    def submit(order: int) -> None:
        start.wait()
        try:
            submitted = kernel.runs.submit(
                tenant.principal,
                agent_id=tenant.agent.id,
                plan=ECHO_PLAN,
                idempotency_key=KEY,
                metadata={"order": order},
            )
            answers.append((202 if submitted.created else 200, submitted.run.id))
        except ConflictError as exc:
            answers.append((409, exc.code))

    threads = [threading.Thread(target=submit, args=(order,)) for order in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers)[0][0] == 202, answers
    assert sorted(answers)[1:] == [(409, "idempotency_conflict")] * 3, answers
    assert run_count(kernel) == 1


def test_a_run_stored_without_a_fingerprint_keeps_the_old_answer(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    first = post(client, tenant, request(tenant))
    with kernel.db.engine.begin() as conn:
        conn.execute(update(runs).values(request_fingerprint=None))
    again = post(client, tenant, request(tenant, metadata={"something": "else"}))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_the_fingerprint_is_stored_with_the_run(kernel: Kernel, tenant: TenantContext) -> None:
    one = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN)
    two = kernel.runs.submit(
        tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN, metadata={"x": 1}
    )
    with kernel.db.engine.connect() as conn:
        stored = {r.id: r.request_fingerprint for r in conn.execute(select(runs))}
    assert stored[one.run.id] == one.run.request_fingerprint
    assert stored[two.run.id] == two.run.request_fingerprint
    assert len(str(stored[one.run.id])) == 64 and stored[one.run.id] != stored[two.run.id]
