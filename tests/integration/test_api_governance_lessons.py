"""``/api/v1/lessons`` end to end: a budget failure teaches a lesson whose proposed rule
``convert`` adopts (an ACTIVE WARN rule of the agent, admin only); defer and dismiss;
409 for moves out of a final state; the tenant wall."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, make_tenant
from runkernel.bootstrap import Kernel
from runkernel.domain.records import Role
from support.governance_api import TINY_TOKEN_BUDGET, add_lesson, api, bearer, finish, submit


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with api(kernel) as test_client:
        yield test_client


def lesson_of(kernel: Kernel, client: TestClient, tenant: TenantContext, **options: Any) -> str:
    run_id = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN)
    return add_lesson(kernel, tenant.principal.tenant_id, tenant.agent.id, run_id, **options)


def post(client: TestClient, api_key: str, path: str) -> Any:
    return client.post(path, headers=bearer(api_key))


def test_converting_a_budget_failure_lesson_adopts_its_warn_rule(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    run_id = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN, budget=TINY_TOKEN_BUDGET)
    finish(kernel, client, tenant.api_key, [run_id])
    headers = bearer(tenant.api_key)
    [lesson] = client.get("/api/v1/lessons", headers=headers).json()["lessons"]
    assert (lesson["run_id"], lesson["kind"], lesson["state"]) == (run_id, "failure", "pending")
    proposal = lesson["proposed_rule"]
    assert proposal["params"] == {"max_tokens": TINY_TOKEN_BUDGET["max_tokens"]}

    converted = post(client, tenant.api_key, f"/api/v1/lessons/{lesson['id']}/convert")
    assert converted.status_code == 200, converted.text
    body = converted.json()
    assert body["lesson"]["state"] == "converted_to_draft"
    rule = body["policy"]
    assert (rule["kind"], rule["params"]) == (proposal["kind"], proposal["params"])
    assert (rule["enforcement"], rule["scope"], rule["agent_id"]) == (
        "WARN",
        "agent",
        tenant.agent.id,
    )
    assert (rule["status"], rule["version"]) == ("ACTIVE", 1)
    assert client.get("/api/v1/policies", headers=headers).json()["policies"] == [rule]

    again = post(client, tenant.api_key, f"/api/v1/lessons/{lesson['id']}/convert")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "illegal_lesson_transition")
    assert len(client.get("/api/v1/policies", headers=headers).json()["policies"]) == 1


def test_a_lesson_without_a_proposal_cannot_be_converted(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    lesson_id = lesson_of(kernel, client, tenant, proposes_rule=False)
    refused = post(client, tenant.api_key, f"/api/v1/lessons/{lesson_id}/convert")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "lesson_without_rule")
    lesson = client.get(f"/api/v1/lessons/{lesson_id}", headers=bearer(tenant.api_key)).json()
    assert lesson["state"] == "pending"
    assert client.get("/api/v1/policies", headers=bearer(tenant.api_key)).json()["policies"] == []


def test_defer_then_dismiss_and_nothing_leaves_dismissed(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    lesson_id = lesson_of(kernel, client, tenant)
    base = f"/api/v1/lessons/{lesson_id}"
    deferred = post(client, tenant.api_key, f"{base}/defer")
    assert (deferred.status_code, deferred.json()["state"]) == (200, "deferred")
    dismissed = post(client, tenant.api_key, f"{base}/dismiss")
    assert (dismissed.status_code, dismissed.json()["state"]) == (200, "dismissed")
    for move in ("defer", "dismiss", "convert"):
        refused = post(client, tenant.api_key, f"{base}/{move}")
        assert refused.status_code == 409, move
    assert client.get("/api/v1/policies", headers=bearer(tenant.api_key)).json()["policies"] == []


def test_state_filter_and_pages(kernel: Kernel, client: TestClient, tenant: TenantContext) -> None:
    made = [lesson_of(kernel, client, tenant) for _ in range(3)]
    post(client, tenant.api_key, f"/api/v1/lessons/{made[0]}/defer")
    headers = bearer(tenant.api_key)

    def ids(**params: Any) -> tuple[list[str], str | None]:
        page = client.get("/api/v1/lessons", params=params, headers=headers).json()
        return [lesson["id"] for lesson in page["lessons"]], page["next_cursor"]

    assert ids(state="deferred") == ([made[0]], None)
    assert ids(state="pending") == ([made[2], made[1]], None)
    first, cursor = ids(limit=2)
    assert first == [made[2], made[1]] and cursor is not None
    assert ids(limit=2, cursor=cursor) == ([made[0]], None)
    bad = client.get("/api/v1/lessons", params={"state": "forgotten"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_query"
    assert (
        "state" in bad.json()["error"]["message"] and "'pending'" in bad.json()["error"]["message"]
    )


def test_converting_needs_an_admin_key_but_triage_does_not(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    lesson_id = lesson_of(kernel, client, tenant)
    user_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
    refused = post(client, user_key, f"/api/v1/lessons/{lesson_id}/convert")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    assert post(client, user_key, f"/api/v1/lessons/{lesson_id}/defer").json()["state"] == (
        "deferred"
    )
    converted = post(client, tenant.api_key, f"/api/v1/lessons/{lesson_id}/convert")
    assert converted.json()["lesson"]["state"] == "converted_to_draft"  # deferred → converted


def test_another_tenants_lesson_is_404_and_stays_untouched(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    lesson_id = lesson_of(kernel, client, tenant)
    intruder = make_tenant(kernel)
    base = f"/api/v1/lessons/{lesson_id}"
    answers = [client.get(base, headers=bearer(intruder.api_key))] + [
        post(client, intruder.api_key, f"{base}/{move}") for move in ("convert", "defer", "dismiss")
    ]
    assert [a.status_code for a in answers] == [404] * 4
    assert client.get("/api/v1/lessons", headers=bearer(intruder.api_key)).json()["lessons"] == []
    assert client.get(base, headers=bearer(tenant.api_key)).json()["state"] == "pending"
    assert client.get("/api/v1/policies", headers=bearer(intruder.api_key)).json() == {
        "policies": []
    }
