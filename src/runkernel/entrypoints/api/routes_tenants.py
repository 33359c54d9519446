"""``/api/v1/tenants/{tenant_id}``: a tenant's status, and suspending or reactivating it
(operator keys only; README: Roles).

The tenant comes from the path: an operator belongs to no tenant. Suspending a suspended
tenant (or reactivating an active one) answers the tenant as it is, so a retry is safe.
What suspension does is in ``Tenancy.set_status``.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from runkernel.domain.money import micros_to_usd
from runkernel.domain.records import MonthSpend, Tenant, TenantStatus
from runkernel.entrypoints.api.auth import KernelDep, PrincipalDep
from runkernel.entrypoints.api.ids import require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES, Body, Usd
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
    monthly_cost_usd: float | None = Field(
        description="what its runs may cost per UTC calendar month; null: no cap"
    )
    month: str = Field(description="the current UTC month, e.g. 2026-12")
    month_spent_usd: float = Field(description="settled this month by its final runs")
    month_reserved_usd: float = Field(
        description="held this month by steps in flight and runs not yet final"
    )


class TenantLimits(Body):
    monthly_cost_usd: Usd | None = Field(
        description="what the tenant's runs may cost per UTC month (null: no cap); below "
        "this month's spend it refuses every further reservation"
    )


@router.get("/{tenant_id}")
def get_tenant(tenant_id: str, principal: PrincipalDep, kernel: KernelDep) -> TenantOut:
    """A tenant, its status, its monthly cost cap and this month's spend."""
    tenant = kernel.tenancy.get_tenant(principal, require_id(tenant_id, "tenant"))
    return tenant_out(tenant, kernel.tenancy.month_spend(principal, tenant.id))


@router.put("/{tenant_id}/limits")
def set_tenant_limits(
    tenant_id: str, body: TenantLimits, principal: PrincipalDep, kernel: KernelDep
) -> TenantOut:
    """Set or lift (null) the tenant's monthly cost cap; each step's reservation is held
    against it with the run's and the agent's budget, atomically."""
    tenant = kernel.tenancy.set_limits(
        principal, require_id(tenant_id, "tenant"), body.monthly_cost_usd
    )
    return tenant_out(tenant, kernel.tenancy.month_spend(principal, tenant.id))


@router.post("/{tenant_id}/suspend")
def suspend_tenant(tenant_id: str, principal: PrincipalDep, kernel: KernelDep) -> TenantOut:
    """Suspend a tenant: its keys may only read and cancel (403 ``tenant_suspended``
    otherwise, a submission first), its queued runs wait, its running runs stop at their
    next mid-run check. Other tenants are untouched."""
    tenant = require_id(tenant_id, "tenant")
    changed = kernel.tenancy.set_status(principal, tenant, TenantStatus.SUSPENDED)
    return tenant_out(changed, kernel.tenancy.month_spend(principal, tenant))


@router.post("/{tenant_id}/reactivate")
def reactivate_tenant(tenant_id: str, principal: PrincipalDep, kernel: KernelDep) -> TenantOut:
    """Reactivate a tenant: its keys act again and its queued runs start."""
    tenant = require_id(tenant_id, "tenant")
    changed = kernel.tenancy.set_status(principal, tenant, TenantStatus.ACTIVE)
    return tenant_out(changed, kernel.tenancy.month_spend(principal, tenant))


def tenant_out(tenant: Tenant, month: MonthSpend) -> TenantOut:
    suspended = tenant.status is TenantStatus.SUSPENDED
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        status=tenant.status,
        created_at=iso(tenant.created_at_ms),
        suspended_at=iso_or_none(tenant.status_changed_at_ms) if suspended else None,
        status_changed_at=iso_or_none(tenant.status_changed_at_ms),
        status_changed_by=tenant.status_changed_by,
        monthly_cost_usd=None
        if tenant.monthly_cost_micros is None
        else micros_to_usd(tenant.monthly_cost_micros),
        month=month.month,
        month_spent_usd=micros_to_usd(month.spent_micros),
        month_reserved_usd=micros_to_usd(month.reserved_micros),
    )
