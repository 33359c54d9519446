"""Tenants, API keys and agents. Keys are shown once and stored as SHA-256 hashes
(they are 256-bit random tokens, so a slow password hash would add nothing)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from runkernel.domain.ids import new_id
from runkernel.domain.money import usd_to_micros
from runkernel.domain.records import Agent, Principal, Role, Tenant
from runkernel.domain.storable import check_storable
from runkernel.errors import (
    AuthenticationError,
    ConflictError,
    PermissionDeniedError,
    ValidationError,
)
from runkernel.services.ports import Clock, TenantRepository, UnitOfWorkFactory

KEY_PREFIX = "rk_"
MAX_MICROS = 2**62  # fits a BIGINT column with room for sums


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant: Tenant
    api_key: str


class Tenancy:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def create_tenant(self, name: str) -> NewTenant:
        """Create a tenant and its first (admin) API key."""
        name = _name(name, "tenant")
        now = self._clock.now_ms()
        tenant = Tenant(new_id("ten"), name, "active", now)
        with self._uow() as uow:
            if uow.tenants.get_by_name(name) is not None:
                raise ConflictError(f"a tenant named {name!r} already exists")
            uow.tenants.add(tenant)
            api_key = self._add_key(uow.tenants, tenant.id, Role.ADMIN, now)
            uow.commit()
        return NewTenant(tenant, api_key)

    def create_api_key(self, tenant_id: str, role: Role) -> str:
        now = self._clock.now_ms()
        with self._uow() as uow:
            if uow.tenants.get(tenant_id) is None:
                raise ValidationError(f"no tenant {tenant_id!r}")
            api_key = self._add_key(uow.tenants, tenant_id, role, now)
            uow.commit()
        return api_key

    @staticmethod
    def _add_key(repo: TenantRepository, tenant_id: str, role: Role, now_ms: int) -> str:
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        repo.add_key(
            key_id=new_id("key"),
            tenant_id=tenant_id,
            key_hash=hash_key(api_key),
            prefix=api_key[:10],
            role=role,
            now_ms=now_ms,
        )
        return api_key

    def authenticate(self, api_key: str | None) -> Principal:
        if not api_key:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        with self._uow(read_only=True) as uow:
            found = uow.tenants.principal_for(hash_key(api_key))
        if found is None:
            raise AuthenticationError("unknown or revoked API key")
        principal, tenant_status = found
        if tenant_status != "active":
            raise PermissionDeniedError(f"tenant is {tenant_status}", code="tenant_inactive")
        return principal

    def create_agent(self, principal: Principal, name: str, budget_usd: float | str) -> Agent:
        if principal.role is not Role.ADMIN:
            # An agent's budget is money: only a tenant admin may set one.
            raise PermissionDeniedError("creating an agent needs an admin key")
        name = _name(name, "agent")
        try:
            budget = usd_to_micros(budget_usd)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        if not 0 <= budget <= MAX_MICROS:
            raise ValidationError(f"budget_usd must be from 0 to {MAX_MICROS // 1_000_000}")
        agent = Agent(new_id("agt"), principal.tenant_id, name, budget, 0, self._clock.now_ms())
        with self._uow() as uow:
            if uow.agents.get_by_name(principal.tenant_id, name) is not None:
                raise ConflictError(f"an agent named {name!r} already exists")
            uow.agents.add(agent)
            uow.commit()
        return agent

    def get_agent(self, principal: Principal, agent_id: str) -> Agent | None:
        with self._uow(read_only=True) as uow:
            return uow.agents.get(principal.tenant_id, agent_id)

    def list_agents(self, principal: Principal) -> list[Agent]:
        with self._uow(read_only=True) as uow:
            return uow.agents.for_tenant(principal.tenant_id)


def _name(raw: str, what: str) -> str:
    name = raw.strip()
    if not name or len(name) > 200:
        raise ValidationError(f"{what} name must be 1-200 characters")
    try:
        check_storable(name)
    except ValueError as exc:
        raise ValidationError(f"{what} name: {exc}") from exc
    return name
