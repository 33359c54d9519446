"""A run records the API key that submitted it (API_KEY_OWNER for later pause and resume
authority), on both databases and through both ways a run is stored: queued, and refused
at T0 by an exhausted agent budget."""

from __future__ import annotations

from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, auth, make_tenant
from runkernel.bootstrap import Kernel
from runkernel.domain.records import Role


def _submit(
    client: TestClient, api_key: str, agent_id: str, *, status: int = 202, **extra: object
) -> dict[str, object]:
    answer = client.post(
        "/api/v1/runs",
        json={"agent_id": agent_id, "plan": ECHO_PLAN, **extra},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert answer.status_code == status, answer.text
    body: dict[str, object] = answer.json()
    return body


def _detail(client: TestClient, tenant: TenantContext, run_id: object) -> dict[str, object]:
    answer = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant))
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_each_run_names_the_key_that_submitted_it(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    user = kernel.tenancy.create_key(tenant.principal, Role.USER)
    by_admin = _submit(client, tenant.api_key, tenant.agent.id)
    by_user = _submit(client, user.api_key, tenant.agent.id)

    assert _detail(client, tenant, by_admin["id"])["submitted_by_key_id"] == (
        tenant.principal.key_id
    )
    assert _detail(client, tenant, by_user["id"])["submitted_by_key_id"] == user.key.id
    stored = kernel.runs.get(tenant.principal, str(by_user["id"]))
    assert stored.submitted_key_id == user.key.id


def test_a_run_refused_at_submission_names_its_key_too(kernel: Kernel, client: TestClient) -> None:
    broke = make_tenant(kernel, budget_usd=0)
    run = _submit(client, broke.api_key, broke.agent.id)
    detail = _detail(client, broke, run["id"])
    assert detail["status"] == "failed_policy"
    assert detail["submitted_by_key_id"] == broke.principal.key_id


def test_an_idempotent_replay_keeps_the_first_submitter(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    user = kernel.tenancy.create_key(tenant.principal, Role.USER)
    first = _submit(client, tenant.api_key, tenant.agent.id, idempotency_key="once")
    again = _submit(client, user.api_key, tenant.agent.id, status=200, idempotency_key="once")
    assert again["id"] == first["id"]
    assert _detail(client, tenant, first["id"])["submitted_by_key_id"] == (tenant.principal.key_id)
