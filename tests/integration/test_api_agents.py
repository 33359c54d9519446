"""Agents over HTTP, and the tenant wall: nothing of another tenant is visible (404)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, auth, make_tenant
from runkernel.bootstrap import Kernel
from runkernel.config import Settings


def test_create_list_and_get_an_agent(client: TestClient, tenant: TenantContext) -> None:
    created = client.post(
        "/api/v1/agents", json={"name": "researcher", "budget_usd": 0.1}, headers=auth(tenant)
    )
    assert created.status_code == 201
    agent = created.json()
    assert agent["name"] == "researcher"
    assert (agent["budget_usd"], agent["spent_usd"]) == (0.1, 0.0)  # exact: micros inside
    assert agent["created_at"].endswith("Z")
    assert created.headers["location"].endswith(f"/api/v1/agents/{agent['id']}")

    fetched = client.get(created.headers["location"], headers=auth(tenant))
    assert fetched.status_code == 200 and fetched.json() == agent
    listed = client.get("/api/v1/agents", headers=auth(tenant)).json()["agents"]
    assert sorted(a["name"] for a in listed) == ["agent", "researcher"]


def test_a_duplicate_agent_name_is_409(client: TestClient, tenant: TenantContext) -> None:
    body = {"name": "twin", "budget_usd": 1}
    assert client.post("/api/v1/agents", json=body, headers=auth(tenant)).status_code == 201
    again = client.post("/api/v1/agents", json=body, headers=auth(tenant))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize("budget", [-1, -0.000001, "10", None, True, 1e12])
def test_a_bad_agent_budget_is_422(
    client: TestClient, tenant: TenantContext, budget: object
) -> None:
    response = client.post(
        "/api/v1/agents", json={"name": "x", "budget_usd": budget}, headers=auth(tenant)
    )
    assert response.status_code == 422
    assert "budget_usd" in response.json()["error"]["message"]


def test_tenant_b_sees_nothing_of_tenant_a(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    other = make_tenant(kernel)
    run_id = client.post(
        "/api/v1/runs",
        json={"agent_id": tenant.agent.id, "plan": ECHO_PLAN},
        headers=auth(tenant),
    ).json()["id"]

    for method, path in [
        ("GET", f"/api/v1/runs/{run_id}"),
        ("POST", f"/api/v1/runs/{run_id}/cancel"),
        ("GET", f"/api/v1/agents/{tenant.agent.id}"),
    ]:
        response = client.request(method, path, headers=auth(other))
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"

    runs = client.get("/api/v1/runs", headers=auth(other)).json()
    assert runs == {"runs": [], "next_cursor": None}
    by_agent = client.get(
        "/api/v1/runs", params={"agent_id": tenant.agent.id}, headers=auth(other)
    ).json()
    assert by_agent["runs"] == []
    agents = client.get("/api/v1/agents", headers=auth(other)).json()["agents"]
    assert [a["id"] for a in agents] == [other.agent.id]
    stolen = client.post(
        "/api/v1/runs",
        json={"agent_id": tenant.agent.id, "plan": ECHO_PLAN},
        headers=auth(other),
    )
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "unknown_agent"
    # …and tenant A's run is untouched by B's cancel attempt.
    mine = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant)).json()
    assert mine["status"] == "queued" and mine["cancel_requested"] is False


def test_an_agent_is_created_with_its_budget_mode_and_concurrency(
    client: TestClient, tenant: TenantContext
) -> None:
    made = client.post(
        "/api/v1/agents",
        json={"name": "capped", "budget_usd": 1, "on_budget": "cap", "max_concurrent_runs": 3},
        headers=auth(tenant),
    ).json()
    assert (made["on_budget"], made["max_concurrent_runs"]) == ("cap", 3)
    unlimited = client.post(
        "/api/v1/agents",
        json={"name": "free", "budget_usd": 1, "max_concurrent_runs": None},
        headers=auth(tenant),
    ).json()
    assert (unlimited["on_budget"], unlimited["max_concurrent_runs"]) == ("terminate", None)
    # Left out: RUNKERNEL_DEFAULT_MAX_CONCURRENT_RUNS (unset in the tests' settings).
    default = client.post(
        "/api/v1/agents", json={"name": "plain", "budget_usd": 1}, headers=auth(tenant)
    ).json()
    assert default["max_concurrent_runs"] is None
    shown = client.get(f"/api/v1/agents/{made['id']}", headers=auth(tenant)).json()
    assert {k: shown[k] for k in ("budget_usd", "spent_usd", "reserved_usd")} == {
        "budget_usd": 1.0,
        "spent_usd": 0.0,
        "reserved_usd": 0.0,
    }


def test_patch_changes_only_what_it_names(client: TestClient, tenant: TenantContext) -> None:
    url = f"/api/v1/agents/{tenant.agent.id}"
    before = client.get(url, headers=auth(tenant)).json()
    changed = client.patch(url, json={"on_budget": "pause"}, headers=auth(tenant))
    assert changed.status_code == 200, changed.text
    assert changed.json() == {**before, "on_budget": "pause"}
    changed = client.patch(
        url, json={"budget_usd": 0.5, "max_concurrent_runs": None}, headers=auth(tenant)
    ).json()
    assert (changed["budget_usd"], changed["on_budget"], changed["max_concurrent_runs"]) == (
        0.5,
        "pause",
        None,
    )
    assert client.get(url, headers=auth(tenant)).json() == changed
    # Below what is spent (nothing here) and to zero are allowed: further steps are refused.
    assert client.patch(url, json={"budget_usd": 0}, headers=auth(tenant)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"budget_usd": -1},
        {"budget_usd": None},
        {"budget_usd": "5"},
        {"on_budget": "explode"},
        {"on_budget": None},
        {"max_concurrent_runs": 0},
        {"max_concurrent_runs": 1.5},
        {"max_concurrent_runs": "3"},
        {"spent_usd": 0},
    ],
)
def test_a_bad_patch_is_422(client: TestClient, tenant: TenantContext, body: object) -> None:
    answer = client.patch(f"/api/v1/agents/{tenant.agent.id}", json=body, headers=auth(tenant))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"]


def test_patch_of_another_tenants_agent_is_404(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    other = make_tenant(kernel)
    answer = client.patch(
        f"/api/v1/agents/{other.agent.id}", json={"budget_usd": 9}, headers=auth(tenant)
    )
    assert answer.status_code == 404
    assert (
        client.get(f"/api/v1/agents/{other.agent.id}", headers=auth(other)).json()["budget_usd"]
        == 100.0
    )


def test_an_agent_left_without_a_limit_gets_the_configured_default(kernel: Kernel) -> None:
    from runkernel.services.tenancy import Tenancy

    tenant = make_tenant(kernel)
    tenancy = Tenancy(kernel.uow, kernel.clock, default_max_concurrent_runs=7)
    assert tenancy.create_agent(tenant.principal, "seven", 1).max_concurrent_runs == 7
    unlimited = tenancy.create_agent(tenant.principal, "free", 1, max_concurrent_runs=None)
    assert unlimited.max_concurrent_runs is None
    assert Settings.model_fields["default_max_concurrent_runs"].default == 5
