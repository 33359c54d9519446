"""Input that used to be accepted silently is a 422 naming the field: unknown plan-level
keys, a duplicate ``output_key``, a money amount that rounds to 0 micro-dollars (every money
field), and a pagination cursor the server never handed out (every list with a cursor).

The money and cursor cases are found from the OpenAPI document, so a new money field or a
new paged list is covered (or the test says it is missing) without editing this file."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, auth

TINY_AMOUNTS = [1e-9, 4e-7, 1e-300]


def assert_422(response: Any, *words: str) -> str:
    assert response.status_code == 422, response.text
    message = str(response.json()["error"]["message"])
    for word in words:
        assert word in message, message
    return message


# -- plans ---------------------------------------------------------------------------
def submit(client: TestClient, tenant: TenantContext, plan: Any) -> Any:
    body = {"agent_id": tenant.agent.id, "plan": plan}
    return client.post("/api/v1/runs", json=body, headers=auth(tenant))


def test_an_unknown_plan_level_key_is_422_naming_it(
    client: TestClient, tenant: TenantContext
) -> None:
    plan = {**copy.deepcopy(ECHO_PLAN), "timeout_s": 5}
    assert_422(submit(client, tenant, plan), "plan", "timeout_s")
    assert submit(client, tenant, ECHO_PLAN).status_code == 202


def test_a_duplicate_output_key_is_422_naming_both_steps(
    client: TestClient, tenant: TenantContext
) -> None:
    plan = copy.deepcopy(ECHO_PLAN)
    plan["steps"][0]["output_key"] = "answer"  # the third step has output_key "answer" too
    assert_422(submit(client, tenant, plan), "output_key 'answer'", "'ask'", "'again'")


# -- money ---------------------------------------------------------------------------
def agent_change(client: TestClient, tenant: TenantContext, usd: float) -> Any:
    body = {"budget_usd": usd}
    return client.patch(f"/api/v1/agents/{tenant.agent.id}", json=body, headers=auth(tenant))


def tenant_limit(client: TestClient, tenant: TenantContext, usd: float) -> Any:
    kernel = client.app.state.kernel  # type: ignore[attr-defined]
    operator = {"Authorization": f"Bearer {kernel.operators.create_key().api_key}"}
    body = {"monthly_cost_usd": usd}
    return client.put(
        f"/api/v1/tenants/{tenant.principal.tenant_id}/limits", json=body, headers=operator
    )


# Every money field of a request body: how to send an amount in it, and its name.
MoneyCase = Callable[[TestClient, TenantContext, float], Any]


def run_budget(client: TestClient, tenant: TenantContext, usd: float) -> Any:
    body = {"agent_id": tenant.agent.id, "plan": ECHO_PLAN, "budget": {"max_cost_usd": usd}}
    return client.post("/api/v1/runs", json=body, headers=auth(tenant))


def agent_budget(client: TestClient, tenant: TenantContext, usd: float) -> Any:
    body = {"name": f"agent-{usd}", "budget_usd": usd}
    return client.post("/api/v1/agents", json=body, headers=auth(tenant))


def policy_limit(client: TestClient, tenant: TenantContext, usd: float) -> Any:
    body = {"kind": "max_cost", "params": {"max_cost_usd": usd}}
    return client.post("/api/v1/policies", json=body, headers=auth(tenant))


def policy_change(client: TestClient, tenant: TenantContext, usd: float) -> Any:
    created = policy_limit(client, tenant, 1.0).json()
    body = {"params": {"max_cost_usd": usd}}
    return client.patch(f"/api/v1/policies/{created['id']}", json=body, headers=auth(tenant))


MONEY_FIELDS: dict[str, tuple[MoneyCase, str]] = {
    "RunCreate.budget.max_cost_usd": (run_budget, "budget.max_cost_usd"),
    "AgentCreate.budget_usd": (agent_budget, "budget_usd"),
    "PolicyCreate.params.max_cost_usd": (policy_limit, "max_cost_usd"),
    "PolicyPatch.params.max_cost_usd": (policy_change, "max_cost_usd"),
    "AgentPatch.budget_usd": (agent_change, "budget_usd"),
    "TenantLimits.monthly_cost_usd": (tenant_limit, "monthly_cost_usd"),
}


@pytest.mark.parametrize("usd", TINY_AMOUNTS)
@pytest.mark.parametrize("field", sorted(MONEY_FIELDS))
def test_an_amount_that_rounds_to_zero_micros_is_422_naming_the_field(
    client: TestClient, tenant: TenantContext, field: str, usd: float
) -> None:
    send, name = MONEY_FIELDS[field]
    assert_422(send(client, tenant, usd), name, "rounds to 0 micro-dollars")


@pytest.mark.parametrize("usd", [0, 5e-7, 1e-6, 0.25])
@pytest.mark.parametrize("field", sorted(MONEY_FIELDS))
def test_zero_and_amounts_of_at_least_half_a_micro_are_accepted(
    client: TestClient, tenant: TenantContext, field: str, usd: float
) -> None:
    send, _ = MONEY_FIELDS[field]
    response = send(client, tenant, usd)
    assert response.status_code in (200, 201, 202), response.text


def money_fields_in(schema: Any, components: dict[str, Any], where: str) -> set[str]:
    """Dotted names of the ``*_usd`` properties in a request schema, through refs,
    compositions and nested objects."""
    found: set[str] = set()
    if not isinstance(schema, dict):
        return found
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return money_fields_in(components[name], components, where or name)
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            found |= money_fields_in(part, components, where)
    for prop, sub in schema.get("properties", {}).items():
        path = f"{where}.{prop}"
        if prop.endswith("_usd"):
            found.add(path)
        found |= money_fields_in(sub, components, path)
    return found


def test_every_money_field_of_the_api_is_covered(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    fields: set[str] = set()
    for operations in document["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                fields |= money_fields_in(media["schema"], components, "")
    assert fields == set(MONEY_FIELDS)


# -- cursors -------------------------------------------------------------------------
def paged_lists(client: TestClient) -> list[str]:
    document = client.get("/openapi.json").json()
    return sorted(
        path
        for path, operations in document["paths"].items()
        if any(p["name"] == "cursor" for p in operations.get("get", {}).get("parameters", []))
    )


def test_the_paged_lists_are_the_ones_expected(client: TestClient) -> None:
    assert paged_lists(client) == ["/api/v1/incidents", "/api/v1/lessons", "/api/v1/runs"]


JUNK_CURSORS = [
    "abc",
    "0",
    "run_",
    "run_01a2332492b27c3502dbb664d55",  # one digit short
    "run_01A2332492B27C3502DBB664D551",  # not what the server writes
    "inc_01a2332492b27c3502dbb664d551",  # another list's id
    "lsn_01a2332492b27c3502dbb664d551",
]
VALID_CURSOR_OF = {
    "/api/v1/runs": "run_01a2332492b27c3502dbb664d551",
    "/api/v1/incidents": "inc_01a2332492b27c3502dbb664d551",
    "/api/v1/lessons": "lsn_01a2332492b27c3502dbb664d551",
}


@pytest.mark.parametrize("path", sorted(VALID_CURSOR_OF))
def test_a_junk_cursor_is_422_naming_the_cursor(
    client: TestClient, tenant: TenantContext, path: str
) -> None:
    for junk in JUNK_CURSORS:
        if junk == VALID_CURSOR_OF[path]:
            continue
        response = client.get(path, params={"cursor": junk}, headers=auth(tenant))
        assert_422(response, "cursor")
        assert response.json()["error"]["code"] == "invalid_query"
    valid = client.get(path, params={"cursor": VALID_CURSOR_OF[path]}, headers=auth(tenant))
    assert valid.status_code == 200, valid.text
