"""Plain records of what the kernel stores: tenants, keys, agents, runs and their steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runkernel.domain.budgets import OnBudget
from runkernel.domain.runs import Phase, RunStatus, Transition
from runkernel.domain.skills import Usage
from runkernel.errors import PermissionDeniedError


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"
    # Cross-tenant, for the people who run runkernel: a key of no tenant, made by
    # `runkernel operators create-key` and kept apart from tenants' keys.
    OPERATOR = "operator"


TENANT_KEY_ROLES = frozenset({Role.ADMIN, Role.USER})  # the roles a tenant's key may have


class TenantStatus(StrEnum):
    """While a tenant is suspended its keys still read (``domain/permissions.py`` says
    what), no new run of it is accepted, and no worker claims its queued runs."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its role, and the tenant the key belongs to (``None`` for
    an operator key, which belongs to none).

    ``tenant_id`` is the tenant a tenant-scoped operation acts in. An operator has none,
    so reading it refuses the request (403): the role table already gives operators no
    tenant-scoped permission, and this keeps a route that forgot to ask it from acting in
    some tenant anyway."""

    home_tenant_id: str | None
    key_id: str
    role: Role
    # Read at authentication; the role table decides what a suspended tenant's key keeps.
    tenant_status: TenantStatus = TenantStatus.ACTIVE

    @classmethod
    def operator(cls, key_id: str) -> Principal:
        return cls(None, key_id, Role.OPERATOR)

    @property
    def tenant_id(self) -> str:
        if self.home_tenant_id is None:
            raise PermissionDeniedError(
                "an operator key belongs to no tenant, so it cannot act inside one; "
                "use a key of that tenant"
            )
        return self.home_tenant_id


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What is kept of an API key besides its hash: never the secret, never the hash."""

    id: str
    tenant_id: str
    prefix: str  # the secret's first characters, so a holder can tell keys apart
    role: Role
    created_at_ms: int
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None


@dataclass(frozen=True, slots=True)
class OperatorKey:
    """What is kept of an operator key besides its hash (see ``ApiKey``)."""

    id: str
    prefix: str
    created_at_ms: int
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    status: TenantStatus
    created_at_ms: int
    # The last suspension or reactivation: when, and by whom (an operator key's id, or
    # "cli" for `runkernel tenants suspend|reactivate`). None while it never changed.
    status_changed_at_ms: int | None = None
    status_changed_by: str | None = None
    monthly_cost_micros: int | None = None  # what its runs may cost per UTC month; None: no cap


@dataclass(frozen=True, slots=True)
class MonthSpend:
    """A tenant's spend in one UTC month: settled by final runs, held by the others."""

    month: str
    spent_micros: int = 0
    reserved_micros: int = 0


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    tenant_id: str
    name: str
    budget_micros: int
    spent_micros: int
    created_at_ms: int
    # Held by steps in flight and by the recorded cost of runs not yet final.
    reserved_micros: int = 0
    on_budget: OnBudget = OnBudget.TERMINATE
    max_concurrent_runs: int | None = None  # None: unlimited


@dataclass(frozen=True, slots=True)
class RunBudget:
    """Limits of one run; ``None`` means unlimited (the agent budget still applies)."""

    max_cost_micros: int | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    timeout_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_cost_micros": self.max_cost_micros,
            "max_tokens": self.max_tokens,
            "max_steps": self.max_steps,
            "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RunBudget:
        raw = raw or {}
        return cls(
            raw.get("max_cost_micros"),
            raw.get("max_tokens"),
            raw.get("max_steps"),
            raw.get("timeout_s"),
        )


@dataclass(frozen=True, slots=True)
class StepRecord:
    run_id: str
    step_index: int
    step_id: str
    skill: str
    status: str  # succeeded | failed
    input: Any
    output: Any
    usage: Usage
    cost_micros: int
    duration_ms: int
    error: str | None
    attempt: int
    tries: int
    finished_at_ms: int


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    tenant_id: str
    agent_id: str
    status: RunStatus
    phase: Phase
    plan: dict[str, Any]
    budget: RunBudget
    metadata: dict[str, Any]
    idempotency_key: str | None
    attempt: int
    lease_owner: str | None
    lease_expires_at_ms: int | None
    next_step: int
    usage: Usage
    cost_micros: int
    error_code: str | None
    error_message: str | None
    output: Any
    observability_status: str
    risk_level: str
    cancel_requested: bool
    created_at_ms: int
    updated_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    steps: tuple[StepRecord, ...] = field(default=())
    transitions: tuple[Transition, ...] = field(default=())
    # What the idempotency key was bound to (domain.idempotency); None for runs stored
    # before fingerprints existed.
    request_fingerprint: str | None = None
    # The fencing token: bumped by every claim, where ``attempt`` counts only the first
    # claim and takeovers of expired leases. 0 until the run is first claimed.
    claim_epoch: int = 0
    # The API key that submitted the run (its owner may later act on it); None for runs
    # stored before it was recorded.
    submitted_key_id: str | None = None
    # A pause was asked for: the worker pauses the run at its next step boundary.
    pause_requested: bool = False
    # A paused run whose resume was granted, waiting for a worker since then.
    resume_requested_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Requests:
    """What was asked of a running run since its worker last looked."""

    cancel: bool = False
    pause: bool = False


@dataclass(frozen=True, slots=True)
class StepRecorded:
    """What storing a step answers the worker: what was asked of the run meanwhile, and
    what ``domain.thresholds`` needs — where the run's agent stands once the step settled
    (spent plus held; None when the step moved nothing of it) and the budgets the run has
    already sent ``threshold.exceeded`` for."""

    requests: Requests
    agent_held_micros: int | None = None
    agent_budget_micros: int | None = None
    thresholds_crossed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease on a run: only the holder of ``epoch`` (the fencing token) may write.

    ``attempt`` is what the run's steps are recorded under; it is not the token, because
    a claim that is no crash recovery (a resumed run picked up again) does not count one.
    """

    run_id: str
    epoch: int
    attempt: int
    worker_id: str
    lease_expires_at_ms: int

    @classmethod
    def of(cls, run: Run, worker_id: str) -> Claim:
        """The claim ``worker_id`` holds on ``run`` as its claim returned it."""
        return cls(run.id, run.claim_epoch, run.attempt, worker_id, run.lease_expires_at_ms or 0)
