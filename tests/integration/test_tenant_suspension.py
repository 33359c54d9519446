"""Suspending a tenant over the operator API (and the CLI), on both databases: its new runs
are refused with ``tenant_suspended`` while its keys still read, its queued runs wait under
running workers while another tenant's finish, and reactivating lets them run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import TenantContext, auth, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Role
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.cli import app as cli_app
from runkernel.entrypoints.worker import WorkerPool
from runkernel.errors import PermissionDeniedError
from support.governance_api import bearer
from support.skills import build_registry, log_plan, read_calls
from support.workers import assert_lifecycle_invariants, rows, wait_until


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@pytest.fixture
def kernel(database_url: str, log_dir: Path) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url), skills=build_registry(log_dir))
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with TestClient(create_app(kernel)) as test_client:
        yield test_client


@pytest.fixture
def operator(kernel: Kernel) -> dict[str, str]:
    return bearer(kernel.operators.create_key().api_key)


def submit(client: TestClient, t: TenantContext) -> Any:
    return client.post(
        "/api/v1/runs", headers=auth(t), json={"agent_id": t.agent.id, "plan": log_plan(1)}
    )


def submit_ok(client: TestClient, t: TenantContext, n: int) -> list[str]:
    answers = [submit(client, t) for _ in range(n)]
    assert [a.status_code for a in answers] == [202] * n, answers[0].text
    return [a.json()["id"] for a in answers]


def phases(kernel: Kernel, run_ids: list[str]) -> set[tuple[str, str]]:
    return {(r.phase, r.status) for r in rows(kernel, "SELECT * FROM runs") if r.id in run_ids}


def test_suspend_refuses_new_runs_holds_queued_ones_and_reactivate_runs_them(
    kernel: Kernel, client: TestClient, operator: dict[str, str], log_dir: Path
) -> None:
    suspended, other = make_tenant(kernel), make_tenant(kernel)
    tenant_id = suspended.principal.tenant_id
    waiting = submit_ok(client, suspended, 3)

    answer = client.post(f"/api/v1/tenants/{tenant_id}/suspend", headers=operator)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"]) == (tenant_id, "suspended")
    assert body["suspended_at"] is not None
    assert body["suspended_at"] == body["status_changed_at"]
    assert body["status_changed_by"].startswith("opk_")
    assert client.get(f"/api/v1/tenants/{tenant_id}", headers=operator).json() == body
    # Suspending again changes nothing, not even the time of the change.
    again = client.post(f"/api/v1/tenants/{tenant_id}/suspend", headers=operator)
    assert (again.status_code, again.json()) == (200, body)

    refused = submit(client, suspended)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "tenant_suspended"
    assert "reactivate" in refused.json()["error"]["message"]
    new_agent = client.post(
        "/api/v1/agents", headers=auth(suspended), json={"name": "more", "budget_usd": 1}
    )
    assert new_agent.json()["error"]["code"] == "tenant_suspended"
    # Its keys still read what happened to its runs.
    listed = client.get("/api/v1/runs", headers=auth(suspended))
    assert listed.status_code == 200, listed.text
    assert {r["id"] for r in listed.json()["runs"]} == set(waiting)
    assert client.get("/api/v1/incidents", headers=auth(suspended)).status_code == 200
    assert client.get(f"/api/v1/runs/{waiting[0]}", headers=auth(suspended)).status_code == 200
    served = submit_ok(client, other, 3)

    pool = WorkerPool(kernel, concurrency=2).start()
    try:
        wait_until(
            lambda: phases(kernel, served) == {("COMPLETED", "succeeded")},
            timeout=20,
            what="the other tenant's runs completed",
        )
        assert phases(kernel, waiting) == {("AUTHORIZED", "queued")}
        assert {c.run_id for c in read_calls(log_dir)} == set(served)

        back = client.post(f"/api/v1/tenants/{tenant_id}/reactivate", headers=operator)
        assert back.status_code == 200, back.text
        assert back.json()["status"] == "active"
        assert back.json()["suspended_at"] is None
        assert back.json()["status_changed_at"] >= body["status_changed_at"]
        kernel.wakeup.notify()
        wait_until(
            lambda: phases(kernel, waiting) == {("COMPLETED", "succeeded")},
            timeout=20,
            what="the reactivated tenant's queued runs completed",
        )
        assert submit(client, suspended).status_code == 202
    finally:
        pool.stop(drain_timeout_s=5)
    assert {c.run_id for c in read_calls(log_dir)} >= set(served) | set(waiting)
    assert_lifecycle_invariants(kernel)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.USER])
def test_a_tenant_key_cannot_suspend_or_read_tenants(
    kernel: Kernel, client: TestClient, role: Role
) -> None:
    t = make_tenant(kernel)
    key = bearer(kernel.tenancy.create_api_key(t.principal.tenant_id, role))
    for method, path in [
        ("POST", f"/api/v1/tenants/{t.principal.tenant_id}/suspend"),
        ("POST", f"/api/v1/tenants/{t.principal.tenant_id}/reactivate"),
        ("GET", f"/api/v1/tenants/{t.principal.tenant_id}"),
    ]:
        answer = client.request(method, path, headers=key)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "permission_denied"
    assert submit(client, t).status_code == 202  # nothing was suspended


def test_an_unknown_tenant_is_404(client: TestClient, operator: dict[str, str]) -> None:
    for method, path in [
        ("POST", "/api/v1/tenants/ten_nope/suspend"),
        ("POST", "/api/v1/tenants/ten_nope/reactivate"),
        ("GET", "/api/v1/tenants/ten_nope"),
        ("GET", "/api/v1/tenants/ten%00"),
    ]:
        answer = client.request(method, path, headers=operator)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "not_found"


def test_cli_suspend_and_reactivate(database_url: str, kernel: Kernel) -> None:
    t = make_tenant(kernel)
    tenant_id = t.principal.tenant_id
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(cli_app, [*args, "--json", "--database-url", database_url], env={})
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    down = cli("tenants", "suspend", tenant_id)
    assert (down["id"], down["status"], down["status_changed_by"]) == (
        tenant_id,
        "suspended",
        "cli",
    )
    assert down["suspended_at"] is not None
    principal = kernel.tenancy.authenticate(t.api_key)
    with pytest.raises(PermissionDeniedError, match="tenant is suspended") as refused:
        kernel.runs.submit(principal, agent_id=t.agent.id, plan=log_plan(1))
    assert refused.value.code == "tenant_suspended"

    up = cli("tenants", "reactivate", tenant_id)
    assert (up["status"], up["suspended_at"]) == ("active", None)
    principal = kernel.tenancy.authenticate(t.api_key)
    assert kernel.runs.submit(principal, agent_id=t.agent.id, plan=log_plan(1)).created

    result = runner.invoke(
        cli_app, ["tenants", "suspend", "ten_nope", "--database-url", database_url], env={}
    )
    assert result.exit_code == 1
    assert "no tenant" in result.stderr


def test_an_operator_sets_and_lifts_a_tenants_monthly_cap(
    kernel: Kernel, client: TestClient, operator: dict[str, str]
) -> None:
    t = make_tenant(kernel)
    url = f"/api/v1/tenants/{t.principal.tenant_id}"
    shown = client.get(url, headers=operator).json()
    assert shown["monthly_cost_usd"] is None
    assert (shown["month_spent_usd"], shown["month_reserved_usd"]) == (0.0, 0.0)
    assert len(shown["month"]) == 7
    capped = client.put(f"{url}/limits", json={"monthly_cost_usd": 2.5}, headers=operator)
    assert capped.status_code == 200, capped.text
    assert capped.json()["monthly_cost_usd"] == 2.5
    assert client.get(url, headers=operator).json()["monthly_cost_usd"] == 2.5
    lifted = client.put(f"{url}/limits", json={"monthly_cost_usd": None}, headers=operator)
    assert lifted.json()["monthly_cost_usd"] is None
    for body in ({}, {"monthly_cost_usd": -1}, {"monthly_cost_usd": "5"}, {"cap": 1}):
        answer = client.put(f"{url}/limits", json=body, headers=operator)
        assert answer.status_code == 422, (body, answer.text)
    missing = client.put(
        "/api/v1/tenants/ten_nope/limits", json={"monthly_cost_usd": 1}, headers=operator
    )
    assert missing.status_code == 404
    own = client.put(f"{url}/limits", json={"monthly_cost_usd": 1}, headers=auth(t))
    assert own.status_code == 403


def test_cli_sets_shows_and_lifts_a_tenants_monthly_cap(database_url: str, kernel: Kernel) -> None:
    tenant_id = make_tenant(kernel).principal.tenant_id
    runner = CliRunner()

    def cli(*args: str) -> Any:
        argv = ["tenants", "limits", tenant_id, *args, "--json", "--database-url", database_url]
        return runner.invoke(cli_app, argv, env={})

    def shown(*args: str) -> Any:
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    assert shown()["monthly_cost_usd"] is None
    capped = shown("--monthly-cost-usd", "2.5")
    assert (capped["id"], capped["monthly_cost_usd"], capped["month_spent_usd"]) == (
        tenant_id,
        2.5,
        0.0,
    )
    assert shown()["monthly_cost_usd"] == 2.5
    assert shown("--no-cap")["monthly_cost_usd"] is None
    both = cli("--no-cap", "--monthly-cost-usd", "1")
    assert both.exit_code != 0 and "not both" in both.stderr
    unknown = runner.invoke(
        cli_app, ["tenants", "limits", "ten_nope", "--database-url", database_url], env={}
    )
    assert unknown.exit_code == 1 and "no tenant" in unknown.stderr
