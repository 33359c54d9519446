"""``/api/v1/policies`` end to end: create (admin only) at version 1, a version bump on
every change, optimistic concurrency (409 when the rule moved on), retire instead of
retire, retired rules never evaluated, validation as 422, and the tenant wall."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.policy import PolicyRule
from runkernel.domain.records import Role
from runkernel.services import policies as policy_service
from support.governance_api import api, bearer, finish, submit

MAX_STEPS_WARN = {"kind": "max_steps", "params": {"max_steps": 1}, "enforcement": "WARN"}


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with api(kernel) as test_client:
        yield test_client


def create(client: TestClient, tenant: TenantContext, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/policies", json=body, headers=bearer(tenant.api_key))


def patch(client: TestClient, tenant: TenantContext, rule_id: str, body: dict[str, Any]) -> Any:
    return client.patch(f"/api/v1/policies/{rule_id}", json=body, headers=bearer(tenant.api_key))


def test_create_reads_back_at_version_1_with_normalized_params(
    client: TestClient, tenant: TenantContext
) -> None:
    response = create(client, tenant, {"kind": "max_cost", "params": {"max_cost_usd": 0.1}})
    assert response.status_code == 201, response.text
    rule = response.json()
    assert response.headers["location"].endswith(f"/api/v1/policies/{rule['id']}")
    assert rule["params"] == {"max_cost_micros": 100_000}  # money is micros inside
    assert (rule["enforcement"], rule["scope"], rule["agent_id"]) == ("BLOCK", "tenant", None)
    assert (rule["status"], rule["version"]) == ("ACTIVE", 1)

    headers = bearer(tenant.api_key)
    assert client.get(response.headers["location"], headers=headers).json() == rule
    assert client.get("/api/v1/policies", headers=headers).json() == {"policies": [rule]}


def test_an_agent_scoped_rule_needs_an_agent_of_the_tenant(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    body = {**MAX_STEPS_WARN, "scope": "agent", "agent_id": tenant.agent.id}
    assert create(client, tenant, body).json()["agent_id"] == tenant.agent.id
    other = make_tenant(kernel)
    foreign = create(client, tenant, {**body, "agent_id": other.agent.id})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "unknown_agent")
    unscoped = create(client, tenant, {**MAX_STEPS_WARN, "scope": "agent"})
    assert unscoped.status_code == 422 and "agent_id" in unscoped.json()["error"]["message"]


def test_every_change_bumps_the_version(client: TestClient, tenant: TenantContext) -> None:
    rule_id = create(client, tenant, MAX_STEPS_WARN).json()["id"]
    changes = [
        {"params": {"max_steps": 5}},
        {"enforcement": "AUDIT"},
        {"enforcement": "AUDIT"},  # the same value again is still an edit
        {"status": "ACTIVE", "params": {"max_steps": 7}},
    ]
    versions = []
    for change in changes:
        response = patch(client, tenant, rule_id, change)
        assert response.status_code == 200, response.text
        versions.append(response.json()["version"])
    assert versions == [2, 3, 4, 5]
    final = client.get(f"/api/v1/policies/{rule_id}", headers=bearer(tenant.api_key)).json()
    assert (final["params"], final["enforcement"], final["version"]) == (
        {"max_steps": 7},
        "AUDIT",
        5,
    )


def test_a_change_to_an_older_version_is_409_and_changes_nothing(
    client: TestClient, tenant: TenantContext
) -> None:
    rule_id = create(client, tenant, MAX_STEPS_WARN).json()["id"]
    assert patch(client, tenant, rule_id, {"enforcement": "BLOCK", "version": 1}).status_code == 200
    stale = patch(client, tenant, rule_id, {"enforcement": "DISABLED", "version": 1})
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "rule_version_conflict")
    retire = client.post(
        f"/api/v1/policies/{rule_id}/retire",
        params={"version": 1},
        headers=bearer(tenant.api_key),
    )
    assert retire.status_code == 409
    rule = client.get(f"/api/v1/policies/{rule_id}", headers=bearer(tenant.api_key)).json()
    assert (rule["enforcement"], rule["status"], rule["version"]) == ("BLOCK", "ACTIVE", 2)


def test_retire_retires_the_rule_which_then_cannot_change(
    client: TestClient, tenant: TenantContext
) -> None:
    kept = create(client, tenant, MAX_STEPS_WARN).json()
    rule_id = create(client, tenant, MAX_STEPS_WARN).json()["id"]
    headers = bearer(tenant.api_key)
    retired = client.post(f"/api/v1/policies/{rule_id}/retire", headers=headers)
    assert retired.status_code == 200
    assert (retired.json()["status"], retired.json()["version"]) == ("RETIRED", 2)

    listed = client.get("/api/v1/policies", headers=headers).json()["policies"]
    assert [r["id"] for r in listed] == [kept["id"]]
    everything = client.get("/api/v1/policies?include_retired=true", headers=headers).json()
    assert {r["id"] for r in everything["policies"]} == {kept["id"], rule_id}

    for refused in (
        client.post(f"/api/v1/policies/{rule_id}/retire", headers=headers),
        patch(client, tenant, rule_id, {"status": "ACTIVE"}),
    ):
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "rule_retired")


def test_retired_rules_are_not_evaluated(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    active = create(client, tenant, MAX_STEPS_WARN).json()
    active = patch(client, tenant, active["id"], {"enforcement": "WARN"}).json()  # version 2
    blocking = create(client, tenant, {"kind": "max_tokens", "params": {"max_tokens": 1}}).json()
    headers = bearer(tenant.api_key)
    retired = client.post(f"/api/v1/policies/{blocking['id']}/retire", headers=headers)
    assert retired.status_code == 200

    run_id = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN)
    [run] = finish(kernel, client, tenant.api_key, [run_id])
    assert run["status"] == "succeeded"

    evaluation = client.get(f"/api/v1/runs/{run_id}/evaluation", headers=headers).json()
    assert evaluation["outcome"] == "WARN"  # the retired BLOCK rule would make it VIOLATION
    assert [(r["id"], r["version"]) for r in evaluation["rules"]] == [(active["id"], 2)]
    assert [(v["rule_id"], v["rule_version"]) for v in evaluation["violations"]] == [
        (active["id"], 2)
    ]


def test_a_user_key_reads_rules_but_cannot_change_them(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    rule = create(client, tenant, MAX_STEPS_WARN).json()
    user_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
    headers = bearer(user_key)
    path = f"/api/v1/policies/{rule['id']}"
    refused = [
        client.post("/api/v1/policies", json=MAX_STEPS_WARN, headers=headers),
        client.patch(path, json={"enforcement": "DISABLED"}, headers=headers),
        client.post(f"{path}/retire", headers=headers),
    ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [
        (403, "permission_denied")
    ] * 3
    assert client.get(path, headers=headers).json() == rule


def test_another_tenants_rule_is_404_and_stays_untouched(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    rule = create(client, tenant, MAX_STEPS_WARN).json()
    intruder = make_tenant(kernel)
    path = f"/api/v1/policies/{rule['id']}"
    headers = bearer(intruder.api_key)
    answers = [
        client.get(path, headers=headers),
        client.patch(path, json={"enforcement": "DISABLED"}, headers=headers),
        client.post(f"{path}/retire", headers=headers),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert client.get("/api/v1/policies?include_retired=true", headers=headers).json() == {
        "policies": []
    }
    assert client.get(path, headers=bearer(tenant.api_key)).json() == rule


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"kind": "max_gold", "params": {}}, "kind must be one of"),
        ({"kind": "max_cost", "params": {"max_cost_usd": -1}}, "max_cost_usd"),
        ({"kind": "max_cost", "params": {"max_cost_usd": 1e22}}, "out of range"),
        ({"kind": "max_steps", "params": {"max_steps": 1, "extra": 2}}, "does not take extra"),
        ({"kind": "allowed_skills", "params": {"skills": []}}, "non-empty list"),
        ({**MAX_STEPS_WARN, "enforcement": "SHOUT"}, "enforcement must be one of"),
        ({**MAX_STEPS_WARN, "scope": "galaxy"}, "scope must be one of"),
        ({**MAX_STEPS_WARN, "version": 3}, "version"),
        ({"params": {"max_steps": 1}}, "kind"),
    ],
)
def test_invalid_rules_are_422_with_the_reason(
    client: TestClient, tenant: TenantContext, body: dict[str, Any], expected: str
) -> None:
    response = create(client, tenant, body)
    assert response.status_code == 422, response.text
    assert expected in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "no changes given"),
        ({"params": {"max_steps": 2.5}}, "max_steps"),
        ({"params": {"max_steps": 1, "max_tokens": 3}}, "does not take max_tokens"),
        ({"status": "PAUSED"}, "status must be one of"),
        ({"scope": "agent"}, "scope"),
        ({"version": 0, "enforcement": "WARN"}, "version"),
    ],
)
def test_invalid_changes_are_422_and_bump_nothing(
    client: TestClient, tenant: TenantContext, change: dict[str, Any], expected: str
) -> None:
    rule_id = create(client, tenant, MAX_STEPS_WARN).json()["id"]
    response = patch(client, tenant, rule_id, change)
    assert response.status_code == 422, response.text
    assert expected in response.json()["error"]["message"]
    assert (
        client.get(f"/api/v1/policies/{rule_id}", headers=bearer(tenant.api_key)).json()["version"]
        == 1
    )


@pytest.mark.parametrize(
    "params", [{"max_tokens": 3}, {"max_cost_usd": 1.5}, {"skills": ["llm.chat"]}]
)
def test_params_of_another_kind_are_409_and_bump_nothing(
    client: TestClient, tenant: TenantContext, params: dict[str, Any]
) -> None:
    rule_id = create(client, tenant, MAX_STEPS_WARN).json()["id"]
    response = patch(client, tenant, rule_id, {"params": params})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "params_of_another_kind" and "max_steps rule" in error["message"]
    version = client.get(f"/api/v1/policies/{rule_id}", headers=bearer(tenant.api_key)).json()
    assert version["version"] == 1


def test_a_change_that_loses_a_race_is_409_not_an_overwrite(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits between this change's read and its write. PostgreSQL only:
    on SQLite the write lock serializes the whole read-modify-write, so no race exists."""
    kernel = build_kernel(make_settings(postgres_url))
    kernel.migrate()
    try:
        tenant = make_tenant(kernel)
        with api(kernel) as client:
            rule_id = create(client, tenant, MAX_STEPS_WARN).json()["id"]
            real_bump = policy_service.policy.bump
            raced = False

            def bump_after_a_rival(rule: PolicyRule, changes: Any, now_ms: int) -> PolicyRule:
                nonlocal raced
                if not raced:
                    raced = True
                    rival = threading.Thread(
                        target=patch, args=(client, tenant, rule_id, {"enforcement": "AUDIT"})
                    )
                    rival.start()
                    rival.join(timeout=30)
                return real_bump(rule, changes, now_ms)

            monkeypatch.setattr(policy_service.policy, "bump", bump_after_a_rival)
            lost = patch(client, tenant, rule_id, {"enforcement": "DISABLED"})
            assert (lost.status_code, lost.json()["error"]["code"]) == (
                409,
                "rule_version_conflict",
            )
            monkeypatch.undo()
            rule = client.get(f"/api/v1/policies/{rule_id}", headers=bearer(tenant.api_key))
            assert (rule.json()["enforcement"], rule.json()["version"]) == ("AUDIT", 2)
    finally:
        kernel.close()
