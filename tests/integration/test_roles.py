"""Key roles: an admin key may create agents; a user key may run them but not create them."""

from __future__ import annotations

import pytest

from conftest import ECHO_PLAN, TenantContext
from runkernel.bootstrap import Kernel
from runkernel.domain.records import Role
from runkernel.errors import PermissionDeniedError


def test_user_key_cannot_create_agents_but_can_submit(
    kernel: Kernel, tenant: TenantContext
) -> None:
    user_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
    user = kernel.tenancy.authenticate(user_key)
    assert user.role is Role.USER
    with pytest.raises(PermissionDeniedError):
        kernel.tenancy.create_agent(user, "sneaky", 1_000_000)
    assert [a.name for a in kernel.tenancy.list_agents(user)] == ["agent"]
    submitted = kernel.runs.submit(user, agent_id=tenant.agent.id, plan=ECHO_PLAN)
    assert submitted.created and submitted.run.tenant_id == tenant.principal.tenant_id


def test_user_key_gets_403_over_http(kernel: Kernel, tenant: TenantContext) -> None:
    from starlette.testclient import TestClient

    from runkernel.entrypoints.api import create_app

    user_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
    with TestClient(create_app(kernel)) as client:
        response = client.post(
            "/api/v1/agents",
            json={"name": "x", "budget_usd": 1},
            headers={"Authorization": f"Bearer {user_key}"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
