"""``/api/v1/tenants/{tenant_id}``: a tenant's status, and suspending or reactivating it
(operator keys only; README: Roles).

The tenant comes from the path: an operator belongs to no tenant. Suspending a suspended
tenant (or reactivating an active one) answers the tenant as it is, so a retry is safe.
What suspension does is in ``Tenancy.set_status``.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from runkernel.domain.records import Tenant, TenantStatus
from runkernel.entrypoints.api.auth import KernelDep, PrincipalDep
from runkernel.entrypoints.api.ids import require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES
from runkernel.entrypoints.api.views import iso, iso_or_none

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"], responses=ERROR_RESPONSES)


class TenantOut(BaseModel):
    id: str
    name: str
    status: TenantStatus
    created_at: str
    suspended_at: str | None = Field(description="when it was suspended; null while active")
    status_changed_at: str | None = Field(description="its last suspension or reactivation")
    status_changed_by: str | None = Field(
        description="who made that change: an operator key's id, or `cli`"
    )


@router.get("/{tenant_id}")
def get_tenant(tenant_id: str, principal: PrincipalDep, kernel: KernelDep) -> TenantOut:
    """A tenant and its status."""
    return tenant_out(kernel.tenancy.get_tenant(principal, require_id(tenant_id, "tenant")))


@router.post("/{tenant_id}/suspend")
def suspend_tenant(tenant_id: str, principal: PrincipalDep, kernel: KernelDep) -> TenantOut:
    """Suspend a tenant: its keys may only read and cancel (403 ``tenant_suspended``
    otherwise, a submission first), its queued runs wait, its running runs stop at their
    next mid-run check. Other tenants are untouched."""
    tenant = require_id(tenant_id, "tenant")
    return tenant_out(kernel.tenancy.set_status(principal, tenant, TenantStatus.SUSPENDED))


@router.post("/{tenant_id}/reactivate")
def reactivate_tenant(tenant_id: str, principal: PrincipalDep, kernel: KernelDep) -> TenantOut:
    """Reactivate a tenant: its keys act again and its queued runs start."""
    tenant = require_id(tenant_id, "tenant")
    return tenant_out(kernel.tenancy.set_status(principal, tenant, TenantStatus.ACTIVE))


def tenant_out(tenant: Tenant) -> TenantOut:
    suspended = tenant.status is TenantStatus.SUSPENDED
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        status=tenant.status,
        created_at=iso(tenant.created_at_ms),
        suspended_at=iso_or_none(tenant.status_changed_at_ms) if suspended else None,
        status_changed_at=iso_or_none(tenant.status_changed_at_ms),
        status_changed_by=tenant.status_changed_by,
    )
