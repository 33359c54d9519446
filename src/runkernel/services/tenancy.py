"""Tenants, API keys and agents. Keys are shown once and stored as SHA-256 hashes
(they are 256-bit random tokens, so a slow password hash would add nothing); listings
show a key's id, prefix, role and dates, never the secret or its hash.

Every request authenticates against the database: there is no cache of keys, so a
revoked key is refused by the very next request."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, replace

from runkernel.domain import budgets
from runkernel.domain.budgets import OnBudget
from runkernel.domain.ids import new_id
from runkernel.domain.money import usd_to_micros
from runkernel.domain.permissions import Permission, require
from runkernel.domain.records import (
    TENANT_KEY_ROLES,
    Agent,
    ApiKey,
    MonthSpend,
    Principal,
    Role,
    Tenant,
    TenantStatus,
)
from runkernel.domain.storable import check_storable
from runkernel.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from runkernel.services.ports import Clock, TenantRepository, UnitOfWorkFactory

_log = logging.getLogger(__name__)

KEY_PREFIX = "rk_"
# Operator keys (services/operators.py) start differently, so that authentication knows
# which table holds a key and still costs one indexed read; no tenant key starts so.
OPERATOR_KEY_PREFIX = "rko_"
PREFIX_CHARS = 10  # of the secret, stored and listed so a holder can tell keys apart
MAX_MICROS = 2**62  # fits a BIGINT column with room for sums


class Default:
    """A setting left out (the configured default applies), apart from an explicit None."""


DEFAULT = Default()


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant: Tenant
    api_key: str


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``api_key`` is its secret, shown this once and kept nowhere."""

    key: ApiKey
    api_key: str


@dataclass(frozen=True, slots=True)
class Rotation:
    new: NewKey
    revoked: ApiKey


class Tenancy:
    """Tenants, keys and agents. Key changes come in two scopes: a tenant's admin key
    acts on its own tenant's keys only (another tenant's key is "not found"), and operators
    (the CLI, ``tenant_id=None`` below) on any tenant's.

    Rotation has no grace period: the old key is revoked in the transaction that makes the
    new one. A client that must not miss a request creates a second key first, switches
    to it, then revokes the first."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        default_max_concurrent_runs: int | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._default_max_concurrent = default_max_concurrent_runs

    def create_tenant(self, name: str) -> NewTenant:
        """Create a tenant and its first (admin) API key."""
        name = _name(name, "tenant")
        now = self._clock.now_ms()
        tenant = Tenant(new_id("ten"), name, TenantStatus.ACTIVE, now)
        with self._uow() as uow:
            if uow.tenants.get_by_name(name) is not None:
                raise ConflictError(f"a tenant named {name!r} already exists")
            uow.tenants.add(tenant)
            made = self._add_key(uow.tenants, tenant.id, Role.ADMIN, now)
            uow.commit()
        return NewTenant(tenant, made.api_key)

    # -- a tenant's status (operators) ------------------------------------------------------
    def get_tenant(self, principal: Principal, tenant_id: str) -> Tenant:
        require(principal, Permission.READ_TENANTS)
        with self._uow(read_only=True) as uow:
            tenant = uow.tenants.get(tenant_id)
        if tenant is None:
            raise NotFoundError(f"no tenant {tenant_id!r}")
        return tenant

    def set_status(self, principal: Principal, tenant_id: str, status: TenantStatus) -> Tenant:
        """Suspend or reactivate a tenant; the one place either happens (API and CLI).

        Idempotent: a tenant already in ``status`` is answered as it is, and keeps the
        time and actor of the change that put it there. The change is recorded on the
        tenant (when, by whom) and logged. It binds at once where status is read:
        authentication (the keys keep only reads and cancel), the claim (no queued run of
        a suspended tenant starts; they start after reactivation) and the mid-run check
        (a running run terminates at its next check)."""
        require(principal, Permission.SUSPEND_TENANT)
        now = self._clock.now_ms()
        with self._uow() as uow:
            uow.tenants.lock(tenant_id)
            tenant = uow.tenants.get(tenant_id)
            if tenant is None:
                raise NotFoundError(f"no tenant {tenant_id!r}")
            if tenant.status is status:
                return tenant
            uow.tenants.set_status(tenant_id, status, actor=principal.key_id, now_ms=now)
            uow.commit()
        _log.warning(
            "tenant %s (%s) %s -> %s by %s",
            tenant_id,
            tenant.name,
            tenant.status.value,
            status.value,
            principal.key_id,
        )
        return replace(
            tenant, status=status, status_changed_at_ms=now, status_changed_by=principal.key_id
        )

    def month_spend(self, principal: Principal, tenant_id: str) -> MonthSpend:
        """The tenant's spend in the current UTC month."""
        require(principal, Permission.READ_TENANTS)
        month = budgets.month_of(self._clock.now_ms())
        with self._uow(read_only=True) as uow:
            return uow.tenants.month_spend(tenant_id, month)

    def set_limits(
        self, principal: Principal, tenant_id: str, monthly_cost_usd: float | str | None
    ) -> Tenant:
        """Set (or with None lift) what the tenant's runs may cost per UTC month. A cap
        below the month's spend is allowed: every further reservation is refused (by
        each agent's on_budget) until it is raised or the month turns."""
        require(principal, Permission.SET_TENANT_LIMITS)
        cap = None if monthly_cost_usd is None else _usd(monthly_cost_usd, "monthly_cost_usd")
        with self._uow() as uow:
            tenant = uow.tenants.get(tenant_id)
            if tenant is None:
                raise NotFoundError(f"no tenant {tenant_id!r}")
            uow.tenants.set_monthly_cap(tenant_id, cap)
            uow.commit()
        _log.warning("tenant %s monthly cost cap -> %s by %s", tenant_id, cap, principal.key_id)
        return replace(tenant, monthly_cost_micros=cap)

    def create_api_key(self, tenant_id: str, role: Role) -> str:
        """Operators: another key of any tenant; its secret."""
        return self._create_key(tenant_id, role).api_key

    # -- a tenant's own keys (an admin key) ---------------------------------------------
    def list_keys(self, principal: Principal) -> list[ApiKey]:
        require(principal, Permission.MANAGE_KEYS)
        with self._uow(read_only=True) as uow:
            return uow.tenants.keys(principal.tenant_id)

    def create_key(self, principal: Principal, role: Role) -> NewKey:
        require(principal, Permission.MANAGE_KEYS)
        return self._create_key(principal.tenant_id, role)

    def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        require(principal, Permission.MANAGE_KEYS)
        return self._revoke(key_id, principal.tenant_id)

    def rotate_key(self, principal: Principal, key_id: str) -> Rotation:
        require(principal, Permission.MANAGE_KEYS)
        return self._rotate(key_id, principal.tenant_id)

    # -- operators: any tenant's keys ------------------------------------------------------
    def keys_of(self, tenant_id: str) -> list[ApiKey]:
        with self._uow(read_only=True) as uow:
            if uow.tenants.get(tenant_id) is None:
                raise ValidationError(f"no tenant {tenant_id!r}")
            return uow.tenants.keys(tenant_id)

    def revoke(self, key_id: str) -> ApiKey:
        return self._revoke(key_id, None)

    def rotate(self, key_id: str) -> Rotation:
        return self._rotate(key_id, None)

    def _create_key(self, tenant_id: str, role: Role) -> NewKey:
        if role not in TENANT_KEY_ROLES:
            raise ValidationError(
                f"a tenant's key is admin or user, not {role.value}; operator keys belong "
                "to no tenant (`runkernel operators create-key`)"
            )
        now = self._clock.now_ms()
        with self._uow() as uow:
            if uow.tenants.get(tenant_id) is None:
                raise ValidationError(f"no tenant {tenant_id!r}")
            made = self._add_key(uow.tenants, tenant_id, role, now)
            uow.commit()
        return made

    def _revoke(self, key_id: str, tenant_id: str | None) -> ApiKey:
        now = self._clock.now_ms()
        with self._uow() as uow:
            key = _live_key(uow.tenants, key_id, tenant_id)
            others = [
                k
                for k in uow.tenants.keys(key.tenant_id)
                if k.role is Role.ADMIN and not k.revoked and k.id != key.id
            ]
            if key.role is Role.ADMIN and not others:
                # Over the API nobody could make a new admin key afterwards.
                raise ConflictError(
                    f"key {key_id} is the tenant's last admin key: rotate it, or create "
                    "another admin key first",
                    code="last_admin_key",
                )
            _revoke_now(uow.tenants, key, now)
            uow.commit()
        return replace(key, revoked_at_ms=now)

    def _rotate(self, key_id: str, tenant_id: str | None) -> Rotation:
        now = self._clock.now_ms()
        with self._uow() as uow:
            key = _live_key(uow.tenants, key_id, tenant_id)
            made = self._add_key(uow.tenants, key.tenant_id, key.role, now)
            _revoke_now(uow.tenants, key, now)
            uow.commit()
        return Rotation(made, replace(key, revoked_at_ms=now))

    @staticmethod
    def _add_key(repo: TenantRepository, tenant_id: str, role: Role, now_ms: int) -> NewKey:
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(new_id("key"), tenant_id, api_key[:PREFIX_CHARS], role, now_ms)
        repo.add_key(
            key_id=key.id,
            tenant_id=tenant_id,
            key_hash=hash_key(api_key),
            prefix=key.prefix,
            role=role,
            now_ms=now_ms,
        )
        return NewKey(key, api_key)

    def authenticate(self, api_key: str | None) -> Principal:
        """The principal of a live key: a tenant's key or an operator's, of no tenant.

        A suspended tenant's key still authenticates, carrying the tenant's status:
        ``require`` then keeps it to reads and cancel, so the tenant can see what
        happened to its runs while it cannot start new ones."""
        if not api_key:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        with self._uow(read_only=True) as uow:
            if api_key.startswith(OPERATOR_KEY_PREFIX):
                operator = uow.operator_keys.principal_for(hash_key(api_key))
                if operator is None:
                    raise AuthenticationError("unknown or revoked API key")
                return operator
            principal = uow.tenants.principal_for(hash_key(api_key))
        if principal is None:
            raise AuthenticationError("unknown or revoked API key")
        return principal

    def create_agent(
        self,
        principal: Principal,
        name: str,
        budget_usd: float | str,
        *,
        on_budget: str = OnBudget.TERMINATE.value,
        max_concurrent_runs: int | None | Default = DEFAULT,
    ) -> Agent:
        """Create an agent; ``max_concurrent_runs`` left out is the configured default
        (None: unlimited)."""
        require(principal, Permission.CREATE_AGENT)
        name = _name(name, "agent")
        budget = _budget(budget_usd)
        limit = (
            self._default_max_concurrent
            if isinstance(max_concurrent_runs, Default)
            else _concurrency(max_concurrent_runs)
        )
        agent = Agent(
            new_id("agt"),
            principal.tenant_id,
            name,
            budget,
            0,
            self._clock.now_ms(),
            on_budget=_on_budget(on_budget),
            max_concurrent_runs=limit,
        )
        with self._uow() as uow:
            if uow.agents.get_by_name(principal.tenant_id, name) is not None:
                raise ConflictError(f"an agent named {name!r} already exists")
            uow.agents.add(agent)
            uow.commit()
        return agent

    def change_agent(
        self,
        principal: Principal,
        agent_id: str,
        *,
        budget_usd: float | str | None = None,
        on_budget: str | None = None,
        max_concurrent_runs: int | None | Default = DEFAULT,
    ) -> Agent:
        """Change an agent's budget, ``on_budget`` or ``max_concurrent_runs`` (only those
        given). A budget below what is spent is allowed: the agent then reserves nothing
        more until it is raised. Runs paused on the budget stay paused until resumed; a
        lower ``max_concurrent_runs`` stops no running run, it holds back the next claims."""
        require(principal, Permission.CHANGE_AGENT)
        with self._uow() as uow:
            agent = uow.agents.get(principal.tenant_id, agent_id)
            if agent is None:
                raise NotFoundError(f"no agent {agent_id!r}")
            if budget_usd is not None:
                agent = replace(agent, budget_micros=_budget(budget_usd))
            if on_budget is not None:
                agent = replace(agent, on_budget=_on_budget(on_budget))
            if not isinstance(max_concurrent_runs, Default):
                agent = replace(agent, max_concurrent_runs=_concurrency(max_concurrent_runs))
            uow.agents.update(agent)
            agent = uow.agents.get(principal.tenant_id, agent_id) or agent
            uow.commit()
        _log.info("agent %s changed by %s", agent_id, principal.key_id)
        return agent

    def get_agent(self, principal: Principal, agent_id: str) -> Agent | None:
        require(principal, Permission.READ_AGENTS)
        with self._uow(read_only=True) as uow:
            return uow.agents.get(principal.tenant_id, agent_id)

    def list_agents(self, principal: Principal) -> list[Agent]:
        require(principal, Permission.READ_AGENTS)
        with self._uow(read_only=True) as uow:
            return uow.agents.for_tenant(principal.tenant_id)


def _live_key(repo: TenantRepository, key_id: str, tenant_id: str | None) -> ApiKey:
    """The unrevoked key ``key_id``, with its tenant locked so that key changes of one
    tenant run one after the other (the last-admin rule counts the tenant's keys)."""
    key = repo.get_key(key_id, tenant_id=tenant_id)
    if key is None:
        raise NotFoundError(f"no key {key_id!r}")
    if key.revoked:
        raise _revoked(key_id)
    repo.lock(key.tenant_id)
    return key


def _revoke_now(repo: TenantRepository, key: ApiKey, now_ms: int) -> None:
    if not repo.revoke_key(key.id, now_ms):  # revoked by someone else since it was read
        raise _revoked(key.id)


def _revoked(key_id: str) -> ConflictError:
    return ConflictError(f"key {key_id} is revoked already", code="key_revoked")


MAX_CONCURRENT_RUNS = 100_000


def _budget(budget_usd: float | str) -> int:
    return _usd(budget_usd, "budget_usd")


def _usd(value: float | str, what: str) -> int:
    try:
        micros = usd_to_micros(value)
    except ValueError as exc:
        raise ValidationError(f"{what}: {exc}") from exc
    if not 0 <= micros <= MAX_MICROS:
        raise ValidationError(f"{what} must be from 0 to {MAX_MICROS // 1_000_000}")
    return micros


def _on_budget(value: str) -> OnBudget:
    try:
        return OnBudget(value)
    except ValueError:
        known = ", ".join(m.value for m in OnBudget)
        raise ValidationError(f"on_budget must be one of {known}, not {value!r}") from None


def _concurrency(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_CONCURRENT_RUNS:
        raise ValidationError(f"max_concurrent_runs must be from 1 to {MAX_CONCURRENT_RUNS}")
    return value


def _name(raw: str, what: str) -> str:
    name = raw.strip()
    if not name or len(name) > 200:
        raise ValidationError(f"{what} name must be 1-200 characters")
    try:
        check_storable(name)
    except ValueError as exc:
        raise ValidationError(f"{what} name: {exc}") from exc
    return name
