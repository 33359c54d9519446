"""The small protocols the service layer needs from the outside world."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from runkernel.domain.audit import (
    AuditExpectation,
    DomainAck,
    ReconciliationResult,
    ReconciliationStatus,
)
from runkernel.domain.budgets import OnBudget
from runkernel.domain.events import Event
from runkernel.domain.incidents import Incident, IncidentStatus
from runkernel.domain.lessons import Lesson, LessonState
from runkernel.domain.midrun import PolicyCheckResult
from runkernel.domain.pauses import Pause
from runkernel.domain.policy import PolicyRule
from runkernel.domain.records import (
    Agent,
    ApiKey,
    Claim,
    MonthSpend,
    OperatorKey,
    Principal,
    Role,
    Run,
    StepRecord,
    StepRecorded,
    Tenant,
    TenantStatus,
)
from runkernel.domain.runs import Transition
from runkernel.domain.skills import Lowered, SkillContext, SkillResult
from runkernel.domain.traces import Trace


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SkillCatalog(Protocol):
    """What the kernel needs of a skill registry."""

    def names(self) -> list[str]: ...

    def validate(self, name: str, params: Mapping[str, Any]) -> None:
        """Raise ``PlanValidationError`` if ``name`` is unknown or its params cannot work.

        Params that are (or contain) ``{{…}}`` templates are checked only for shape, since
        their values are known at run time.
        """

    def estimate(self, name: str, params: Mapping[str, Any]) -> int | None:
        """The most one call of ``name`` with the rendered ``params`` may cost, in micros;
        None if the skill cannot tell (the step's declared estimate or the default applies)."""

    def lower(self, name: str, params: Mapping[str, Any], per_call_micros: int) -> Lowered | None:
        """The rendered ``params`` changed so that one call costs at most ``per_call_micros``
        (an LLM's ``max_tokens`` cut), or None if the skill cannot be lowered."""

    def invoke(self, name: str, params: Mapping[str, Any], context: SkillContext) -> SkillResult:
        """Call the skill. A raised ``SkillError`` or ``SkillResult.error`` fails the step;
        any other exception is turned into a ``SkillResult`` with ``error`` set."""


class TenantRepository(Protocol):
    def add(self, tenant: Tenant) -> None: ...
    def get(self, tenant_id: str) -> Tenant | None: ...
    def get_by_name(self, name: str) -> Tenant | None: ...
    def add_key(
        self, *, key_id: str, tenant_id: str, key_hash: str, prefix: str, role: Role, now_ms: int
    ) -> None: ...
    def set_status(
        self, tenant_id: str, status: TenantStatus, *, actor: str, now_ms: int
    ) -> None: ...
    def set_monthly_cap(self, tenant_id: str, micros: int | None) -> None: ...
    def month_spend(self, tenant_id: str, month: str) -> MonthSpend: ...
    def principal_for(self, key_hash: str) -> Principal | None:
        """The principal of an unrevoked tenant key, carrying its tenant's status."""

    def lock(self, tenant_id: str) -> None:
        """Hold the tenant's row until the transaction ends (serializes key changes)."""

    def keys(self, tenant_id: str) -> list[ApiKey]: ...
    def get_key(self, key_id: str, *, tenant_id: str | None) -> ApiKey | None:
        """``tenant_id=None``: any tenant's key (operators)."""

    def revoke_key(self, key_id: str, now_ms: int) -> bool:
        """False when the key is revoked already (a concurrent revoke won)."""


class OperatorKeyRepository(Protocol):
    def add(self, *, key_id: str, key_hash: str, prefix: str, now_ms: int) -> None: ...
    def principal_for(self, key_hash: str) -> Principal | None: ...
    def keys(self) -> list[OperatorKey]: ...
    def get(self, key_id: str) -> OperatorKey | None: ...
    def revoke(self, key_id: str, now_ms: int) -> bool:
        """Revoke an unrevoked key; False when it was revoked already."""
        ...


class AgentRepository(Protocol):
    def add(self, agent: Agent) -> None: ...
    def update(self, agent: Agent) -> None:
        """Write the agent's settings, never its spend or reservations."""

    def get(self, tenant_id: str, agent_id: str) -> Agent | None: ...
    def get_by_name(self, tenant_id: str, name: str) -> Agent | None: ...
    def for_tenant(self, tenant_id: str) -> list[Agent]: ...


class RunRepository(Protocol):
    def add(self, run: Run, transitions: Sequence[Transition]) -> None: ...
    def get(self, tenant_id: str, run_id: str, *, details: bool = True) -> Run | None: ...
    def get_for_worker(self, run_id: str) -> Run | None: ...
    def lock(self, run_id: str) -> None:
        """Hold the run's row until the transaction ends (the audit sweep against a
        concurrent completion)."""

    def find_by_idempotency_key(self, tenant_id: str, key: str) -> Run | None: ...
    def search(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Run]: ...
    def steps(self, run_id: str) -> list[StepRecord]: ...
    def request_cancel(self, tenant_id: str, run_id: str, now_ms: int) -> bool: ...
    def cancel_queued(self, run: Run, transition: Transition) -> bool: ...
    def set_governance_status(
        self, run_id: str, *, risk_level: str, observability_status: str
    ) -> None: ...
    def notify_new_runs(self) -> None: ...
    def claim(self, worker_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Run]: ...
    def renew_lease(self, claim: Claim, now_ms: int, lease_ms: int) -> bool: ...
    def release(self, claim: Claim, now_ms: int) -> bool: ...
    def reserve(
        self, claim: Claim, micros: int, *, month: str | None = None, slack: int = 0
    ) -> bool:
        """Atomically hold ``micros`` of the agent's budget and of the tenant's month for
        the next step; False if spend + reservations + ``micros`` + ``slack`` would pass
        either (roll back, then)."""

    def budget_left(self, claim: Claim) -> tuple[OnBudget, int, int | None]:
        """The run's agent's ``on_budget``, what is left of its budget and of the tenant's
        month (None: no cap) — a read."""

    def record_step(
        self, claim: Claim, step: StepRecord, *, now_ms: int, reserved_micros: int = 0
    ) -> StepRecorded: ...
    def mark_thresholds(self, claim: Claim, budgets: frozenset[str]) -> None:
        """Remember (fenced) the budgets whose threshold.exceeded the run has sent."""

    def finish(
        self,
        claim: Claim,
        transitions: Sequence[Transition],
        *,
        output: Any = None,
        error_code: str | None = None,
        error_message: str | None = None,
        risk_level: str = "NORMAL",
        observability_status: str = "OK",
    ) -> None: ...


class PauseRepository(Protocol):
    def add(self, pause: Pause, tenant_id: str) -> None: ...
    def save(self, pause: Pause) -> None: ...
    def for_run(self, run_id: str) -> list[Pause]: ...
    def open_for(self, run_id: str) -> Pause | None: ...
    def expired(self, now_ms: int, *, limit: int = 100) -> list[Pause]: ...
    def expiring(self, now_ms: int, notify_before_ms: int, *, limit: int = 100) -> list[Pause]:
        """Open pauses about to expire whose current expiry had no notice yet."""

    def request_pause(self, tenant_id: str, run_id: str, now_ms: int, *, by: str) -> bool: ...
    def requested_by(self, run_id: str) -> str | None: ...
    def pause(self, claim: Claim, transition: Transition) -> None:
        """Fenced: raises ``LeaseLostError`` unless the claim still holds the run."""
        ...

    def request_resume(self, run_id: str, now_ms: int) -> bool: ...
    def terminate(self, run_id: str, t: Transition, *, error_code: str) -> bool: ...


class PolicyCheckRepository(Protocol):
    """The mid-run decisions kept with a run (PAUSE and TERMINATE only)."""

    def add(self, tenant_id: str, run_id: str, check: PolicyCheckResult) -> None: ...
    def for_run(self, run_id: str) -> list[PolicyCheckResult]:
        """Oldest first."""
        ...


class UnitOfWork(Protocol):
    """One transaction: rolled back on exit unless :meth:`commit` was called."""

    @property
    def tenants(self) -> TenantRepository: ...
    @property
    def operator_keys(self) -> OperatorKeyRepository: ...
    @property
    def agents(self) -> AgentRepository: ...
    @property
    def runs(self) -> RunRepository: ...
    @property
    def incidents(self) -> IncidentRepository: ...
    @property
    def policies(self) -> PolicyRepository: ...
    @property
    def traces(self) -> TraceRepository: ...
    @property
    def lessons(self) -> LessonRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def pauses(self) -> PauseRepository: ...
    @property
    def policy_checks(self) -> PolicyCheckRepository: ...

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def after_commit(self, hook: Callable[[], None]) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork: ...


class WakeupSignal(Protocol):
    """Tells idle workers that a run became claimable; a hint, never the source of truth."""

    def notify(self) -> None: ...

    def wait(self, timeout: float) -> bool: ...

    def clear(self) -> None: ...


# -- events (transactional outbox) ---------------------------------------------------------


class EventBus(Protocol):
    """Carries published events to subscribers. Delivery is at least once; subscribers
    dedupe on ``Event.id`` (``runkernel.domain.events.Deduplicator``)."""

    def publish(self, event: Event) -> None: ...

    def subscribe(self, pattern: str, handler: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``handler`` for each event whose topic matches ``pattern`` (``topic``,
        ``prefix.*`` or ``*``); returns a function that cancels the subscription."""


class OutboxRepository(Protocol):
    """Events stored in the caller's transaction, published later by a relay. Never
    commits (DESIGN invariant 3)."""

    def add(self, events: Sequence[Event]) -> None: ...

    def claim_batch(self, relay_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Event]:
        """Claim up to ``limit`` unpublished events for ``lease_ms``, oldest first. Never
        returns an event of a run while an earlier event of that run is unpublished and
        not in the same batch, so a run's events are published in order."""

    def mark_published(self, ids: Sequence[str], now_ms: int) -> int: ...

    def release(self, relay_id: str, ids: Sequence[str]) -> int:
        """Give back claimed events that were not published, so they are retried now
        instead of after the lease."""

    def pending_count(self) -> int: ...


class AuditStore(Protocol):
    """Expectations, acks and reconciliation results of the runtime audit contract.

    Writes are appends: acks are never updated or deleted (a rollback is a new ROLLED_BACK
    ack), so concurrent writers cannot lose one another's records. ``durable`` says whether
    the records survive the process (mode test/prod refuse a store that is not).
    """

    @property
    def durable(self) -> bool: ...

    def add_expectations(self, expectations: Sequence[AuditExpectation]) -> None: ...

    def add_ack(self, ack: DomainAck) -> None: ...

    def expectations(self, run_id: str) -> list[AuditExpectation]:
        """In creation order; PENDING until the run's reconciliation is saved, then
        settled (ACKED, MISSING or FAILED, ``runkernel.domain.audit.settle_expectations``)."""

    def acks(self, run_id: str) -> list[DomainAck]:
        """In creation order."""

    def get_pending_run_ids(self, now_ms: int, *, limit: int = 100) -> list[str]:
        """Runs whose finalize_run deadline is before ``now_ms`` and that have no saved
        reconciliation yet, earliest deadline first."""

    def save_reconciliation(
        self, result: ReconciliationResult, tenant_id: str | None, *, replace: bool = False
    ) -> bool:
        """Record ``result`` and settle the run's expectations. Returns False, changing
        nothing, when the run already has a result and ``replace`` is false: of two
        sweepers reconciling one run, exactly one gets True (and raises the incident)."""

    def reconciliation(self, run_id: str) -> ReconciliationResult | None: ...

    def reconciliations(
        self,
        *,
        status: ReconciliationStatus | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
    ) -> list[ReconciliationResult]:
        """Newest first; ``tenant_id`` scopes the list to one tenant (DESIGN invariant 8)."""

    def clear_run(self, run_id: str) -> None:
        """Forget everything about one run (retention; tests)."""


# -- governance ---------------------------------------------------------------------------


class IncidentRepository(Protocol):
    def add(self, incident: Incident) -> bool: ...
    def get(self, tenant_id: str, incident_id: str) -> Incident | None: ...
    def for_run(self, run_id: str) -> list[Incident]: ...
    def search(
        self,
        tenant_id: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        category: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Incident]: ...
    def update(self, incident: Incident, *, expected_status: IncidentStatus) -> bool: ...


class PolicyRepository(Protocol):
    def active_rules(self, tenant_id: str) -> list[PolicyRule]: ...
    def rules(self, tenant_id: str, *, include_retired: bool = False) -> list[PolicyRule]: ...
    def get(self, tenant_id: str, rule_id: str) -> PolicyRule | None: ...
    def add(self, rule: PolicyRule) -> None: ...
    def save(self, rule: PolicyRule, *, expected_version: int) -> bool: ...
    def add_evaluation(
        self,
        *,
        evaluation_id: str,
        tenant_id: str,
        run_id: str,
        evaluation: dict[str, Any],
        now_ms: int,
    ) -> bool: ...
    def evaluation(self, run_id: str) -> dict[str, Any] | None: ...


class TraceRepository(Protocol):
    def start(self, *, run_id: str, tenant_id: str, now_ms: int) -> bool: ...
    def start_fresh(self, rows: list[tuple[str, str]], *, now_ms: int) -> None: ...
    def complete(
        self, run_id: str, *, status: str, sink_error: str | None, now_ms: int
    ) -> bool: ...
    def get(self, run_id: str) -> dict[str, Any] | None: ...


class LessonRepository(Protocol):
    def add(self, lesson: Lesson) -> bool: ...
    def get(self, tenant_id: str, lesson_id: str) -> Lesson | None: ...
    def search(
        self,
        tenant_id: str,
        *,
        state: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Lesson]: ...
    def update(self, lesson: Lesson, *, expected_state: LessonState) -> bool: ...


class AuditRepository(Protocol):
    """The SQL audit store on the caller's connection: expectations go in with the run,
    acks with the work they report."""

    def add_expectations(self, expectations: Sequence[AuditExpectation]) -> None: ...
    def add_ack(self, ack: DomainAck) -> None: ...
    def add_acks(self, acks: Sequence[DomainAck]) -> None: ...
    def save_reconciliation(
        self, result: ReconciliationResult, tenant_id: str | None, *, replace: bool = False
    ) -> bool: ...
    def expectations(self, run_id: str) -> list[AuditExpectation]: ...
    def acks(self, run_id: str) -> list[DomainAck]: ...
    def reconciliation(self, run_id: str) -> ReconciliationResult | None: ...
    def hand_off_acks(self, acks: Sequence[DomainAck]) -> None:
        """Acks for a non-SQL audit store, kept in this transaction until an
        ``AckForwarder`` has copied them to the store (DESIGN invariant 9)."""

    def pending_hand_offs(self, limit: int = 100) -> list[DomainAck]:
        """Handed-off acks not forwarded yet, oldest first."""

    def mark_forwarded(self, ids: Sequence[str], now_ms: int) -> int: ...


class TraceSink(Protocol):
    """An observability backend traces are exported to; raises ``TraceSinkError``."""

    def export(self, event: str, trace: Trace) -> None: ...
