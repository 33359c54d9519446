"""The role matrix, exhaustively: for every permission of the role table and every role,
each endpoint that needs the permission answers as the table says — success for a role
that has it, 403 ``permission_denied`` for one that has not.

The API checks are parametrized over the code's table (``runkernel.domain.permissions``);
``STATED`` below is the same matrix written out by hand (it is the README's "Roles"
table), so a wrong change to the code's table fails here too. ``ENDPOINTS`` names the
permission of every ``/api/v1`` route, and a route missing from it fails the test.
"""

from __future__ import annotations

import ast
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import runkernel
from conftest import ECHO_PLAN, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.permissions import ROLES, Permission, allows
from runkernel.domain.records import Claim, Principal, Role
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.governance_services import GovernanceServices
from support.governance_api import add_lesson, add_stale_incident, bearer

STATED: dict[str, set[str]] = {
    "submit_run": {"admin", "user"},
    "read_runs": {"admin", "user"},
    "cancel_run": {"admin", "user"},
    "read_agents": {"admin", "user"},
    "create_agent": {"admin"},
    "change_agent": {"admin"},
    "read_policies": {"admin", "user"},
    "change_policies": {"admin"},
    "read_incidents": {"admin", "user"},
    "acknowledge_incident": {"admin", "user"},
    "resolve_incident": {"admin"},
    "read_lessons": {"admin", "user"},
    "defer_lesson": {"admin", "user"},
    "dismiss_lesson": {"admin"},
    "convert_lesson": {"admin"},
    "read_audit": {"admin", "user"},
    "manage_keys": {"admin"},
    "read_tenants": {"operator"},
    "suspend_tenant": {"operator"},
    "set_tenant_limits": {"operator"},
}


@dataclass
class World:
    """One tenant with an admin and a user key, an operator key (of no tenant), and things
    to read and act on."""

    kernel: Kernel
    client: TestClient
    admin: Principal
    keys: dict[Role, str]
    agent_id: str
    final_run: str  # cancelled while queued: it has an evaluation, a trace and an audit

    def queued_run(self) -> str:
        return self.kernel.runs.submit(self.admin, agent_id=self.agent_id, plan=ECHO_PLAN).run.id

    def running_run(self) -> str:
        """A run a worker (this test) holds, between two steps."""
        run_id = self.queued_run()
        with self.kernel.uow() as uow:
            uow.runs.claim("matrix-worker", 100, self.kernel.clock.now_ms(), 60_000)
            uow.commit()
        return run_id

    def paused_run(self) -> str:
        """A run manually paused at its step boundary (any tenant key may resume it)."""
        run_id = self.running_run()
        with self.kernel.uow(read_only=True) as uow:
            run = uow.runs.get_for_worker(run_id)
        assert run is not None
        self.kernel.pauses.pause_at_boundary(run, Claim.of(run, "matrix-worker"))
        return run_id

    def incident(self) -> str:
        return add_stale_incident(self.kernel, self.admin.tenant_id, self.queued_run())

    def lesson(self) -> str:
        return add_lesson(self.kernel, self.admin.tenant_id, self.agent_id, self.final_run)

    def rule(self) -> str:
        policies = GovernanceServices.of(self.kernel).policies
        made = policies.create(
            self.admin, kind="max_steps", params={"max_steps": 50}, enforcement="WARN"
        )
        return made.id

    def key(self) -> str:
        return self.kernel.tenancy.create_key(self.admin, Role.USER).key.id

    def other_tenant(self) -> dict[str, str]:
        """A tenant of its own to suspend, so that the world's tenant stays active."""
        made = self.kernel.tenancy.create_tenant(f"t-{secrets.token_hex(4)}")
        return {"tenant_id": made.tenant.id}


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # as FastAPI names it
    ok: int  # the answer to a role that may
    target: Callable[[World], dict[str, str]] = lambda w: {}
    body: Callable[[World], Any] | None = None


def _run(w: World) -> dict[str, str]:
    return {"run_id": w.final_run}


ENDPOINTS: dict[Permission, list[Endpoint]] = {
    Permission.SUBMIT_RUN: [
        Endpoint(
            "POST", "/api/v1/runs", 202, body=lambda w: {"agent_id": w.agent_id, "plan": ECHO_PLAN}
        )
    ],
    Permission.READ_RUNS: [
        Endpoint("GET", "/api/v1/runs", 200),
        Endpoint("GET", "/api/v1/runs/{run_id}", 200, _run),
        Endpoint("GET", "/api/v1/runs/{run_id}/evaluation", 200, _run),
        Endpoint("GET", "/api/v1/runs/{run_id}/trace", 200, _run),
    ],
    Permission.CANCEL_RUN: [
        Endpoint("POST", "/api/v1/runs/{run_id}/cancel", 200, lambda w: {"run_id": w.queued_run()}),
        Endpoint("POST", "/api/v1/runs/{run_id}/pause", 200, lambda w: {"run_id": w.running_run()}),
        Endpoint(
            "POST",
            "/api/v1/runs/{run_id}/resume",
            200,
            lambda w: {"run_id": w.paused_run()},
            body=lambda w: {"note": "go on"},
        ),
        Endpoint(
            "POST",
            "/api/v1/runs/{run_id}/reject",
            200,
            lambda w: {"run_id": w.paused_run()},
            body=lambda w: {"note": "no"},
        ),
    ],
    Permission.READ_AGENTS: [
        Endpoint("GET", "/api/v1/agents", 200),
        Endpoint("GET", "/api/v1/agents/{agent_id}", 200, lambda w: {"agent_id": w.agent_id}),
    ],
    Permission.CREATE_AGENT: [
        Endpoint(
            "POST",
            "/api/v1/agents",
            201,
            body=lambda w: {"name": f"a-{secrets.token_hex(4)}", "budget_usd": 1},
        )
    ],
    Permission.CHANGE_AGENT: [
        Endpoint(
            "PATCH",
            "/api/v1/agents/{agent_id}",
            200,
            lambda w: {"agent_id": w.agent_id},
            body=lambda w: {"budget_usd": 100},
        )
    ],
    Permission.READ_POLICIES: [
        Endpoint("GET", "/api/v1/policies", 200),
        Endpoint("GET", "/api/v1/policies/{rule_id}", 200, lambda w: {"rule_id": w.rule()}),
    ],
    Permission.CHANGE_POLICIES: [
        Endpoint(
            "POST",
            "/api/v1/policies",
            201,
            body=lambda w: {"kind": "max_steps", "params": {"max_steps": 9}, "enforcement": "WARN"},
        ),
        Endpoint(
            "PATCH",
            "/api/v1/policies/{rule_id}",
            200,
            lambda w: {"rule_id": w.rule()},
            body=lambda w: {"params": {"max_steps": 8}},
        ),
        Endpoint("POST", "/api/v1/policies/{rule_id}/retire", 200, lambda w: {"rule_id": w.rule()}),
    ],
    Permission.READ_INCIDENTS: [
        Endpoint("GET", "/api/v1/incidents", 200),
        Endpoint(
            "GET", "/api/v1/incidents/{incident_id}", 200, lambda w: {"incident_id": w.incident()}
        ),
    ],
    Permission.ACKNOWLEDGE_INCIDENT: [
        Endpoint(
            "POST",
            "/api/v1/incidents/{incident_id}/acknowledge",
            200,
            lambda w: {"incident_id": w.incident()},
        )
    ],
    Permission.RESOLVE_INCIDENT: [
        Endpoint(
            "POST",
            "/api/v1/incidents/{incident_id}/resolve",
            200,
            lambda w: {"incident_id": w.incident()},
        )
    ],
    Permission.READ_LESSONS: [
        Endpoint("GET", "/api/v1/lessons", 200),
        Endpoint("GET", "/api/v1/lessons/{lesson_id}", 200, lambda w: {"lesson_id": w.lesson()}),
    ],
    Permission.DEFER_LESSON: [
        Endpoint(
            "POST", "/api/v1/lessons/{lesson_id}/defer", 200, lambda w: {"lesson_id": w.lesson()}
        )
    ],
    Permission.DISMISS_LESSON: [
        Endpoint(
            "POST", "/api/v1/lessons/{lesson_id}/dismiss", 200, lambda w: {"lesson_id": w.lesson()}
        )
    ],
    Permission.CONVERT_LESSON: [
        Endpoint(
            "POST", "/api/v1/lessons/{lesson_id}/convert", 200, lambda w: {"lesson_id": w.lesson()}
        )
    ],
    Permission.READ_AUDIT: [
        Endpoint("GET", "/api/v1/runs/{run_id}/audit", 200, _run),
        Endpoint("GET", "/api/v1/audit/reconciliations", 200),
    ],
    Permission.MANAGE_KEYS: [
        Endpoint("GET", "/api/v1/keys", 200),
        Endpoint("POST", "/api/v1/keys", 201, body=lambda w: {"role": "user"}),
        Endpoint("POST", "/api/v1/keys/{key_id}/revoke", 200, lambda w: {"key_id": w.key()}),
        Endpoint("POST", "/api/v1/keys/{key_id}/rotate", 201, lambda w: {"key_id": w.key()}),
    ],
    Permission.READ_TENANTS: [
        Endpoint(
            "GET", "/api/v1/tenants/{tenant_id}", 200, lambda w: {"tenant_id": w.admin.tenant_id}
        )
    ],
    Permission.SUSPEND_TENANT: [
        Endpoint("POST", "/api/v1/tenants/{tenant_id}/suspend", 200, World.other_tenant),
        Endpoint("POST", "/api/v1/tenants/{tenant_id}/reactivate", 200, World.other_tenant),
    ],
    Permission.SET_TENANT_LIMITS: [
        Endpoint(
            "PUT",
            "/api/v1/tenants/{tenant_id}/limits",
            200,
            World.other_tenant,
            body=lambda w: {"monthly_cost_usd": None},
        ),
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('roles')) / 'runkernel.db'}"
    kernel = build_kernel(make_settings(url))
    kernel.migrate()
    tenant = make_tenant(kernel)
    user_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
    operator_key = kernel.operators.create_key().api_key
    with TestClient(create_app(kernel)) as client:
        w = World(
            kernel,
            client,
            tenant.principal,
            {Role.ADMIN: tenant.api_key, Role.USER: user_key, Role.OPERATOR: operator_key},
            tenant.agent.id,
            final_run="",
        )
        w.final_run = w.queued_run()
        kernel.runs.cancel(tenant.principal, w.final_run)
        yield w
    kernel.close()


def test_the_code_table_is_the_stated_matrix() -> None:
    assert set(ROLES) == set(Permission), "every permission needs a row in the table"
    code = {p.value: {r.value for r in roles} for p, roles in ROLES.items()}
    assert code == STATED


def test_every_api_route_is_in_the_matrix(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1")
        for method in operations
    }
    listed = {(e.method, e.route) for endpoints in ENDPOINTS.values() for e in endpoints}
    assert routes == listed


CASES = [
    pytest.param(permission, role, endpoint, id=f"{role.value}-{endpoint.method}-{endpoint.route}")
    for permission in ROLES
    for role in Role
    for endpoint in ENDPOINTS.get(permission, [])
]


@pytest.mark.parametrize(("permission", "role", "endpoint"), CASES)
def test_each_role_gets_what_the_table_says(
    world: World, permission: Permission, role: Role, endpoint: Endpoint
) -> None:
    path = endpoint.route.format(**endpoint.target(world))
    body = endpoint.body(world) if endpoint.body else None
    answer = world.client.request(
        endpoint.method, path, json=body, headers=bearer(world.keys[role])
    )
    if allows(role, permission):
        assert answer.status_code == endpoint.ok, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "permission_denied"
        assert permission.value.replace("_", " ") in answer.json()["error"]["message"]
        if role is Role.OPERATOR:
            assert "belongs to no tenant" in answer.json()["error"]["message"]


def test_every_permission_has_an_endpoint() -> None:
    assert set(ENDPOINTS) == set(Permission)


README = Path(__file__).resolve().parents[2] / "README.md"
README_ROWS = {
    "submit runs": "submit_run",
    "read runs (detail, evaluation, trace)": "read_runs",
    "cancel a run": "cancel_run",
    "read agents": "read_agents",
    "create an agent (sets a budget)": "create_agent",
    "change an agent's budget, on_budget or max_concurrent_runs": "change_agent",
    "read policy rules": "read_policies",
    "create, change or retire a policy rule": "change_policies",
    "read incidents": "read_incidents",
    "acknowledge an incident": "acknowledge_incident",
    "resolve an incident": "resolve_incident",
    "read lessons": "read_lessons",
    "defer a lesson": "defer_lesson",
    "dismiss a lesson": "dismiss_lesson",
    "convert a lesson into a policy rule": "convert_lesson",
    "read a run's audit and the stored reconciliations": "read_audit",
    "list, create, revoke and rotate the tenant's keys": "manage_keys",
    "read a tenant's status": "read_tenants",
    "suspend or reactivate a tenant": "suspend_tenant",
    "set a tenant's monthly cost cap": "set_tenant_limits",
}


def test_the_readme_states_the_same_matrix() -> None:
    section = README.read_text().split("## Roles", 1)[1].split("\n## ", 1)[0]
    stated: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] in README_ROWS:
            roles = {
                role
                for role, cell in zip(("admin", "user", "operator"), cells[1:], strict=True)
                if cell == "yes"
            }
            stated[README_ROWS[cells[0]]] = roles
    assert stated == STATED


def test_no_module_but_the_role_table_reads_a_callers_role() -> None:
    """One place decides a permission: ``principal.role`` is read only by
    ``domain/permissions.py`` (services call ``require``)."""
    src = Path(runkernel.__file__).parent
    readers = sorted(
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "role"
        and isinstance(node.value, ast.Name)
        and node.value.id == "principal"
    )
    assert set(readers) == {"domain/permissions.py"}
