"""Operator keys on both databases: made, listed and revoked apart from any tenant's keys;
one authenticates as an ``operator`` principal of no tenant, which today's tenant
endpoints refuse with a clear 403 (rate limits on, so the limiter meets a principal
without a tenant)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Role
from runkernel.entrypoints.api import create_app
from runkernel.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from runkernel.services.tenancy import hash_key
from support.governance_api import bearer


def test_an_operator_key_authenticates_as_an_operator_of_no_tenant(kernel: Kernel) -> None:
    made = kernel.operators.create_key()
    assert made.api_key.startswith("rko_") and made.key.prefix == made.api_key[:10]

    principal = kernel.tenancy.authenticate(made.api_key)
    assert (principal.key_id, principal.role, principal.home_tenant_id) == (
        made.key.id,
        Role.OPERATOR,
        None,
    )
    with pytest.raises(PermissionDeniedError, match="belongs to no tenant"):
        _ = principal.tenant_id


def test_operator_keys_are_stored_hashed_and_listed_without_secrets(kernel: Kernel) -> None:
    first, second = kernel.operators.create_key(), kernel.operators.create_key()
    listed = kernel.operators.list_keys()
    assert {k.id for k in listed} == {first.key.id, second.key.id}
    assert all(not k.revoked for k in listed)
    with kernel.uow(read_only=True) as uow:
        stored = uow.connection.exec_driver_sql("SELECT key_hash FROM operator_keys").all()
    assert {row[0] for row in stored} == {hash_key(first.api_key), hash_key(second.api_key)}
    assert first.api_key not in repr(listed)


def test_a_revoked_operator_key_is_refused_at_once(kernel: Kernel) -> None:
    made = kernel.operators.create_key()
    other = kernel.operators.create_key()
    revoked = kernel.operators.revoke_key(made.key.id)
    assert revoked.revoked and revoked.id == made.key.id

    with pytest.raises(AuthenticationError):
        kernel.tenancy.authenticate(made.api_key)
    assert kernel.tenancy.authenticate(other.api_key).key_id == other.key.id
    assert {k.id: k.revoked for k in kernel.operators.list_keys()} == {
        made.key.id: True,
        other.key.id: False,
    }
    with pytest.raises(ConflictError) as again:
        kernel.operators.revoke_key(made.key.id)
    assert again.value.code == "key_revoked"


def test_operator_and_tenant_keys_do_not_mix(kernel: Kernel, tenant: TenantContext) -> None:
    operator = kernel.operators.create_key()
    with pytest.raises(NotFoundError):  # `keys revoke` acts on tenants' keys only
        kernel.tenancy.revoke(operator.key.id)
    with pytest.raises(NotFoundError):  # and `operators revoke-key` on operators' only
        kernel.operators.revoke_key(tenant.principal.key_id)
    with pytest.raises(ValidationError, match="operators create-key"):
        kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.OPERATOR)
    assert [k.role for k in kernel.tenancy.keys_of(tenant.principal.tenant_id)] == [Role.ADMIN]
    # A tenant key's hash in the operator table would not authenticate as an operator.
    with pytest.raises(AuthenticationError):
        kernel.tenancy.authenticate("rko_" + tenant.api_key.removeprefix("rk_"))


@pytest.fixture
def limited(database_url: str) -> Iterator[Kernel]:
    k = build_kernel(
        make_settings(database_url, rate_limit_key_per_s=100, rate_limit_tenant_per_s=100)
    )
    k.migrate()
    yield k
    k.close()


def test_tenant_endpoints_refuse_an_operator_key_with_a_clear_403(limited: Kernel) -> None:
    tenant = make_tenant(limited)
    operator = limited.operators.create_key()
    with TestClient(create_app(limited)) as client:
        for method, path in [
            ("GET", "/api/v1/runs"),
            ("GET", "/api/v1/keys"),
            ("GET", f"/api/v1/agents/{tenant.agent.id}"),
        ]:
            answer = client.request(method, path, headers=bearer(operator.api_key))
            assert answer.status_code == 403, answer.text
            error = answer.json()["error"]
            assert error["code"] == "permission_denied"
            assert "role is operator, which belongs to no tenant" in error["message"]

        limited.operators.revoke_key(operator.key.id)
        answer = client.get("/api/v1/runs", headers=bearer(operator.api_key))
        assert answer.status_code == 401
        assert client.get("/api/v1/runs", headers=bearer(tenant.api_key)).status_code == 200
