"""Plans checked at submission (T0): a BLOCK rule that the plan or budget breaks refuses
the run with 403 ``policy_denied`` naming the rule and version; the refused run is stored
failed_policy with its whole governance record (incident, VIOLATION evaluation, trace,
clean audit) and its skills never run. WARN and AUDIT rules let it through and are noted
on the run; scope, retirement and idempotent repeats behave as for every other rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, auth, make_settings, make_tenant
from runkernel.adapters.skills import build_default_registry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.skills import SkillContext
from runkernel.entrypoints.api import create_app
from support.governance import drive

RECORD = "test.record"


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def kernel(database_url: str, calls: list[str]) -> Iterator[Kernel]:
    settings = make_settings(database_url)
    registry = build_default_registry(settings)

    def record(params: dict[str, Any], context: SkillContext) -> Any:
        calls.append(f"{context.run_id}/{context.step_id}")
        return {"recorded": context.step_id}

    registry.register(RECORD, record, description="records that it ran")
    k = build_kernel(settings, skills=registry)
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with TestClient(create_app(kernel)) as test_client:
        yield test_client


def plan(*skills: str) -> dict[str, Any]:
    params = {
        RECORD: {},
        "json.transform": {"data": {"a": 1}, "expression": "a"},
    }
    return {
        "steps": [
            {"step_id": f"s{i}", "skill": skill, "params": params[skill]}
            for i, skill in enumerate(skills)
        ]
    }


def add_rule(client: TestClient, tenant: TenantContext, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/policies", json=body, headers=auth(tenant))
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_run(client: TestClient, tenant: TenantContext, run_plan: Any, **extra: Any) -> Any:
    body = {"agent_id": tenant.agent.id, "plan": run_plan, **extra}
    return client.post("/api/v1/runs", json=body, headers=auth(tenant))


def run_detail(client: TestClient, tenant: TenantContext, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant))
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_refused(
    kernel: Kernel,
    client: TestClient,
    tenant: TenantContext,
    response: Any,
    rules: list[dict[str, Any]],
    calls: list[str],
) -> str:
    """403 policy_denied naming ``rules``; the run stored failed_policy, governed, clean."""
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "policy_denied"
    for rule in rules:
        assert f"rule {rule['id']} v{rule['version']} ({rule['kind']}, BLOCK)" in error["message"]
    assert [(v["rule_id"], v["rule_version"]) for v in error["violations"]] == [
        (r["id"], r["version"]) for r in rules
    ]
    run_id = str(error["run_id"])
    assert run_id in error["message"]

    run = run_detail(client, tenant, run_id)
    assert (run["phase"], run["status"]) == ("FAILED", "failed_policy")
    assert run["error"]["code"] == "policy_denied"
    assert run["transitions"][-1]["reason"].startswith("refused by policy: rule ")

    evaluation = client.get(f"/api/v1/runs/{run_id}/evaluation", headers=auth(tenant)).json()
    assert evaluation["outcome"] == "VIOLATION"
    violated = {(v["rule_id"], v["rule_version"]) for v in evaluation["violations"]}
    assert {(r["id"], r["version"]) for r in rules} <= violated
    incidents = client.get("/api/v1/incidents", headers=auth(tenant)).json()["incidents"]
    assert [i["category"] for i in incidents if i["run_id"] == run_id] == ["AUTHORIZATION_DENIED"]
    trace = client.get(f"/api/v1/runs/{run_id}/trace", headers=auth(tenant))
    assert trace.status_code == 200 and trace.json()["status"] == "failed"
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None and result.status.value == "COMPLETE", result

    # Never claimed: no attempt, no start, no step; the skill never ran.
    assert (run["attempt"], run["started_at"], run["steps"]) == (0, None, [])
    assert not [c for c in calls if c.startswith(run_id)]
    return run_id


def test_a_block_denied_skill_refuses_the_run_and_the_skill_never_runs(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    rule = add_rule(client, tenant, kind="denied_skills", params={"skills": [RECORD]})
    response = post_run(client, tenant, plan("json.transform", RECORD))
    run_id = assert_refused(kernel, client, tenant, response, [rule], calls)
    assert "skills denied: test.record" in response.json()["error"]["message"]

    # A worker pass claims nothing of it; a run without the skill still runs.
    allowed = post_run(client, tenant, plan("json.transform"))
    assert allowed.status_code == 202, allowed.text
    assert drive(kernel, allowed.json()["id"]) == "succeeded"
    assert run_detail(client, tenant, run_id)["status"] == "failed_policy"
    assert calls == []


def test_allowed_skills_refuses_a_skill_outside_the_list(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    rule = add_rule(client, tenant, kind="allowed_skills", params={"skills": ["json.transform"]})
    response = post_run(client, tenant, plan(RECORD))
    assert_refused(kernel, client, tenant, response, [rule], calls)
    assert "skills not allowed: test.record" in response.json()["error"]["message"]
    assert post_run(client, tenant, plan("json.transform")).status_code == 202


def test_max_steps_refuses_a_longer_plan(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    rule = add_rule(client, tenant, kind="max_steps", params={"max_steps": 2})
    response = post_run(client, tenant, plan(RECORD, RECORD, RECORD))
    assert_refused(kernel, client, tenant, response, [rule], calls)
    assert "3 planned steps is over the limit of 2" in response.json()["error"]["message"]
    # The run's own step budget bounds it within the rule: accepted.
    capped = post_run(client, tenant, plan(RECORD, RECORD, RECORD), budget={"max_steps": 2})
    assert capped.status_code == 202, capped.text
    assert post_run(client, tenant, plan(RECORD, RECORD)).status_code == 202


def test_max_cost_refuses_a_budget_over_the_limit(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    rule = add_rule(client, tenant, kind="max_cost", params={"max_cost_usd": 0.5})
    response = post_run(client, tenant, plan(RECORD), budget={"max_cost_usd": 0.75})
    assert_refused(kernel, client, tenant, response, [rule], calls)
    assert (
        "a budget of 750000 micros is over the limit of 500000"
        in (response.json()["error"]["message"])
    )
    within = post_run(client, tenant, plan(RECORD), budget={"max_cost_usd": 0.5})
    assert within.status_code == 202, within.text
    # No cost budget: the cost is not known before the run; judged when it is final.
    assert post_run(client, tenant, plan(RECORD)).status_code == 202


def test_every_violated_block_rule_is_named(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    steps = add_rule(client, tenant, kind="max_steps", params={"max_steps": 1})
    denied = add_rule(client, tenant, kind="denied_skills", params={"skills": [RECORD]})
    edited = client.patch(
        f"/api/v1/policies/{denied['id']}",
        json={"params": {"skills": [RECORD, "x"]}},
        headers=auth(tenant),
    ).json()
    assert edited["version"] == 2
    response = post_run(client, tenant, plan(RECORD, "json.transform"))
    assert_refused(kernel, client, tenant, response, sorted([steps, edited], key=_id), calls)


def _id(rule: dict[str, Any]) -> str:
    return str(rule["id"])


@pytest.mark.parametrize("enforcement", ["WARN", "AUDIT"])
def test_warn_and_audit_rules_let_the_run_through_and_are_noted(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str], enforcement: str
) -> None:
    rule = add_rule(
        client, tenant, kind="denied_skills", params={"skills": [RECORD]}, enforcement=enforcement
    )
    response = post_run(client, tenant, plan(RECORD))
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    authorized = run_detail(client, tenant, run_id)["transitions"][-1]
    assert authorized["to_phase"] == "AUTHORIZED"
    assert authorized["reason"] == (
        f"authorized; policy noted: rule {rule['id']} v1 (denied_skills, {enforcement}): "
        "skills denied: test.record"
    )
    assert drive(kernel, run_id) == "succeeded"
    assert calls == [f"{run_id}/s0"]
    evaluation = client.get(f"/api/v1/runs/{run_id}/evaluation", headers=auth(tenant)).json()
    assert evaluation["outcome"] == ("WARN" if enforcement == "WARN" else "PASS")
    assert [v["rule_id"] for v in evaluation["violations"]] == [rule["id"]]


def test_a_rule_without_violations_leaves_the_reason_alone(
    client: TestClient, tenant: TenantContext
) -> None:
    add_rule(client, tenant, kind="denied_skills", params={"skills": ["x"]}, enforcement="WARN")
    run_id = post_run(client, tenant, plan(RECORD)).json()["id"]
    assert run_detail(client, tenant, run_id)["transitions"][-1]["reason"] == "authorized"


def test_an_agent_scoped_rule_applies_to_its_agent_only(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    other = kernel.tenancy.create_agent(tenant.principal, "other", 100.0)
    rule = add_rule(
        client,
        tenant,
        kind="denied_skills",
        params={"skills": [RECORD]},
        scope="agent",
        agent_id=other.id,
    )
    mine = post_run(client, tenant, plan(RECORD))
    assert mine.status_code == 202, mine.text
    theirs = client.post(
        "/api/v1/runs", json={"agent_id": other.id, "plan": plan(RECORD)}, headers=auth(tenant)
    )
    assert (
        theirs.status_code == 403
        and theirs.json()["error"]["violations"][0]["rule_id"] == (rule["id"])
    )


def test_retired_and_disabled_rules_refuse_nothing(
    client: TestClient, tenant: TenantContext
) -> None:
    retired = add_rule(client, tenant, kind="denied_skills", params={"skills": [RECORD]})
    disabled = add_rule(client, tenant, kind="max_steps", params={"max_steps": 0})
    assert post_run(client, tenant, plan(RECORD)).status_code == 403
    headers = auth(tenant)
    assert client.post(f"/api/v1/policies/{retired['id']}/retire", headers=headers).is_success
    patched = client.patch(
        f"/api/v1/policies/{disabled['id']}", json={"enforcement": "DISABLED"}, headers=headers
    )
    assert patched.is_success
    response = post_run(client, tenant, plan(RECORD))
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    assert run_detail(client, tenant, run_id)["transitions"][-1]["reason"] == "authorized"


def test_another_tenants_rules_do_not_apply(kernel: Kernel, client: TestClient) -> None:
    strict, free = make_tenant(kernel), make_tenant(kernel)
    add_rule(client, strict, kind="denied_skills", params={"skills": [RECORD]})
    assert post_run(client, strict, plan(RECORD)).status_code == 403
    assert post_run(client, free, plan(RECORD)).status_code == 202


def test_a_repeat_of_a_refused_request_answers_the_same_refusal(
    kernel: Kernel, client: TestClient, tenant: TenantContext, calls: list[str]
) -> None:
    """The key names the refused run for good: a repeat stores nothing new and answers the
    first 403 again, even once the rule is retired (a new key is a new request)."""
    rule = add_rule(client, tenant, kind="denied_skills", params={"skills": [RECORD]})
    first = post_run(client, tenant, plan(RECORD), idempotency_key="k-1")
    run_id = assert_refused(kernel, client, tenant, first, [rule], calls)
    client.post(f"/api/v1/policies/{rule['id']}/retire", headers=auth(tenant))

    again = post_run(client, tenant, plan(RECORD), idempotency_key="k-1")
    assert again.status_code == 403
    assert again.json() == first.json()
    runs = client.get("/api/v1/runs", headers=auth(tenant)).json()["runs"]
    assert [r["id"] for r in runs] == [run_id]

    different = post_run(client, tenant, plan("json.transform"), idempotency_key="k-1")
    assert (different.status_code, different.json()["error"]["code"]) == (
        409,
        "idempotency_conflict",
    )
    fresh = post_run(client, tenant, plan(RECORD), idempotency_key="k-2")
    assert fresh.status_code == 202, fresh.text
