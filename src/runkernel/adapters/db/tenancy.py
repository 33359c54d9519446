"""SQL for tenants, API keys and agents. Like every repository it takes its caller's
connection and never commits, rolls back or begins (DESIGN invariant 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from runkernel.adapters.db.rows import agent_from_row
from runkernel.adapters.db.tables import agents, api_keys, tenant_spend, tenants
from runkernel.domain.records import (
    Agent,
    ApiKey,
    MonthSpend,
    Principal,
    Role,
    Tenant,
    TenantStatus,
)

# Read at every submission (authorization).
_GET_AGENT = select(agents).where(
    agents.c.tenant_id == bindparam("p_tenant_id"), agents.c.id == bindparam("p_id")
)


class SqlTenantRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, tenant: Tenant) -> None:
        self._conn.execute(
            insert(tenants).values(
                id=tenant.id,
                name=tenant.name,
                status=tenant.status.value,
                created_at_ms=tenant.created_at_ms,
            )
        )

    def get(self, tenant_id: str) -> Tenant | None:
        row = self._conn.execute(select(tenants).where(tenants.c.id == tenant_id)).first()
        return _tenant(row) if row else None

    def get_by_name(self, name: str) -> Tenant | None:
        row = self._conn.execute(select(tenants).where(tenants.c.name == name)).first()
        return _tenant(row) if row else None

    def set_status(self, tenant_id: str, status: TenantStatus, *, actor: str, now_ms: int) -> None:
        self._conn.execute(
            update(tenants)
            .where(tenants.c.id == tenant_id)
            .values(status=status.value, status_changed_at_ms=now_ms, status_changed_by=actor)
        )

    def set_monthly_cap(self, tenant_id: str, micros: int | None) -> None:
        self._conn.execute(
            update(tenants).where(tenants.c.id == tenant_id).values(monthly_cost_micros=micros)
        )

    def month_spend(self, tenant_id: str, month: str) -> MonthSpend:
        row = self._conn.execute(
            select(tenant_spend.c.spent_micros, tenant_spend.c.reserved_micros).where(
                tenant_spend.c.tenant_id == tenant_id, tenant_spend.c.month == month
            )
        ).first()
        return (
            MonthSpend(month, row.spent_micros, row.reserved_micros) if row else MonthSpend(month)
        )

    def add_key(
        self, *, key_id: str, tenant_id: str, key_hash: str, prefix: str, role: Role, now_ms: int
    ) -> None:
        self._conn.execute(
            insert(api_keys).values(
                id=key_id,
                tenant_id=tenant_id,
                key_hash=key_hash,
                prefix=prefix,
                role=role.value,
                created_at_ms=now_ms,
            )
        )

    def principal_for(self, key_hash: str) -> Principal | None:
        """The principal of an unrevoked key, with its tenant's status."""
        row = self._conn.execute(
            select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.role, tenants.c.status)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at_ms.is_(None))
        ).first()
        if row is None:
            return None
        return Principal(row.tenant_id, row.id, Role(row.role), TenantStatus(row.status))

    def lock(self, tenant_id: str) -> None:
        # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers.
        self._conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id).with_for_update())

    def keys(self, tenant_id: str) -> list[ApiKey]:
        rows = self._conn.execute(
            select(api_keys)
            .where(api_keys.c.tenant_id == tenant_id)
            .order_by(api_keys.c.created_at_ms, api_keys.c.id)
        )
        return [_key(r) for r in rows]

    def get_key(self, key_id: str, *, tenant_id: str | None) -> ApiKey | None:
        query = select(api_keys).where(api_keys.c.id == key_id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        row = self._conn.execute(query).first()
        return _key(row) if row else None

    def revoke_key(self, key_id: str, now_ms: int) -> bool:
        result = self._conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms)
        )
        return result.rowcount == 1


def _tenant(row: Row[Any]) -> Tenant:
    return Tenant(
        row.id,
        row.name,
        TenantStatus(row.status),
        row.created_at_ms,
        row.status_changed_at_ms,
        row.status_changed_by,
        row.monthly_cost_micros,
    )


def _key(row: Row[Any]) -> ApiKey:
    # Never the hash: an ApiKey has no field for it, so nothing built from one can leak it.
    return ApiKey(
        row.id, row.tenant_id, row.prefix, Role(row.role), row.created_at_ms, row.revoked_at_ms
    )


class SqlAgentRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, agent: Agent) -> None:
        self._conn.execute(
            insert(agents).values(
                id=agent.id,
                tenant_id=agent.tenant_id,
                name=agent.name,
                budget_micros=agent.budget_micros,
                spent_micros=agent.spent_micros,
                created_at_ms=agent.created_at_ms,
                on_budget=agent.on_budget.value,
                max_concurrent_runs=agent.max_concurrent_runs,
            )
        )

    def update(self, agent: Agent) -> None:
        """Write the agent's settings (budget, on_budget, max_concurrent_runs); its spend
        and reservations are the workers' and are left as they are."""
        self._conn.execute(
            update(agents)
            .where(agents.c.tenant_id == agent.tenant_id, agents.c.id == agent.id)
            .values(
                budget_micros=agent.budget_micros,
                on_budget=agent.on_budget.value,
                max_concurrent_runs=agent.max_concurrent_runs,
            )
        )

    def get(self, tenant_id: str, agent_id: str) -> Agent | None:
        row = self._conn.execute(_GET_AGENT, {"p_tenant_id": tenant_id, "p_id": agent_id}).first()
        return agent_from_row(row) if row else None

    def get_by_name(self, tenant_id: str, name: str) -> Agent | None:
        row = self._conn.execute(
            select(agents).where(agents.c.tenant_id == tenant_id, agents.c.name == name)
        ).first()
        return agent_from_row(row) if row else None

    def for_tenant(self, tenant_id: str) -> list[Agent]:
        rows = self._conn.execute(
            select(agents).where(agents.c.tenant_id == tenant_id).order_by(agents.c.id)
        )
        return [agent_from_row(r) for r in rows]
