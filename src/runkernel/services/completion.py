"""``RunCompletionTransaction``: a run's final status and everything governance owes for
it — incident decision, policy evaluation, trace completion, lessons, risk level, spend
settlement, audit acks and outbox events — in ONE database transaction (invariant 1).

On any failure the transaction rolls back, compensations of non-transactional effects
(the trace sink export) run in reverse order, a ROLLED_BACK ack is recorded — in its own
transaction, so history is never erased — for every action that had been acked, and
``TransactionFailed`` is raised. The caller retries; nothing ever falls back to
non-atomic writes. Events leave only through the outbox, after commit (invariant 2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from runkernel.domain import audit, events
from runkernel.domain.audit import DomainAck
from runkernel.domain.events import Event
from runkernel.domain.midrun import PolicyCheckResult
from runkernel.domain.outcomes import from_run
from runkernel.domain.records import Claim, Run
from runkernel.domain.risk import risk_level
from runkernel.domain.runs import Phase, RunStatus, Transition, path
from runkernel.domain.traces import (
    ObservabilityMode,
    TraceStatus,
    on_sink_failure,
    trace_of,
    trace_status_for,
)
from runkernel.errors import LeaseLostError, TraceSinkError, TransactionFailed
from runkernel.services.ack_forwarder import AckForwarder
from runkernel.services.governance import FaultHook, GovernanceRegistry, Journal
from runkernel.services.ports import (
    AuditStore,
    Clock,
    TraceSink,
    UnitOfWork,
    UnitOfWorkFactory,
    WakeupSignal,
)
from runkernel.services.reconciler import settle_finished_run

log = logging.getLogger(__name__)


class CompletionPhase(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    INCIDENT_CREATED = "INCIDENT_CREATED"
    POLICY_EVALUATED = "POLICY_EVALUATED"
    TRACE_COMPLETED = "TRACE_COMPLETED"
    COMMITTED = "COMMITTED"
    EVENTS_PUBLISHED = "EVENTS_PUBLISHED"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"


_PHASE_AFTER = {
    "incident": CompletionPhase.INCIDENT_CREATED,
    "policy": CompletionPhase.POLICY_EVALUATED,
    "trace": CompletionPhase.TRACE_COMPLETED,
}


@dataclass(frozen=True, slots=True)
class Finish:
    """How the executor decided the run ends."""

    chain: list[Transition]
    output: Any = None
    error_code: str | None = None
    error_message: str | None = None
    # The mid-run check that ended the run, kept with it in the completion's transaction.
    policy_check: PolicyCheckResult | None = None

    @property
    def status(self) -> RunStatus:
        return self.chain[-1].to_status


@dataclass(frozen=True, slots=True)
class CompletionResult:
    run_id: str
    status: RunStatus
    phase: CompletionPhase
    results: dict[str, Any]


class RunCompletionTransaction:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        governance: GovernanceRegistry,
        audit_store: AuditStore,
        trace_sink: TraceSink,
        clock: Clock,
        *,
        mode: ObservabilityMode,
        acks_in_transaction: bool,
        relay_wakeup: WakeupSignal | None = None,
        fault: FaultHook | None = None,
        ack_forwarder: AckForwarder | None = None,
    ) -> None:
        self._uow = uow
        self._governance = governance
        self._audit = audit_store
        self._sink = trace_sink
        self._clock = clock
        self._mode = mode
        self._acks_in_tx = acks_in_transaction
        self._forwarder = (
            None if acks_in_transaction else ack_forwarder or AckForwarder(uow, audit_store, clock)
        )
        self._relay_wakeup = relay_wakeup
        self.fault = fault  # tests set it to force a failure at a phase

    def complete(self, run: Run, claim: Claim, finish: Finish) -> CompletionResult:
        now = self._clock.now_ms()
        phase = CompletionPhase.NOT_STARTED
        compensations: list[Callable[[], None]] = []
        journal = Journal(run.tenant_id, run.id, now)
        finish, sink_error, observability = self._export_trace(run, finish, now, compensations)
        final = replace(
            run,
            status=finish.status,
            error_code=finish.error_code,
            finished_at_ms=now,
            observability_status=observability,
        )
        outcome = from_run(final)

        def fault(point: str) -> None:
            nonlocal phase
            phase = _PHASE_AFTER.get(point, phase)
            if self.fault is not None:
                self.fault(point)

        try:
            with self._uow() as uow:
                uow.runs.finish(
                    claim,
                    finish.chain,
                    output=finish.output,
                    error_code=finish.error_code,
                    error_message=finish.error_message,
                    risk_level=risk_level(outcome).value,
                    observability_status=observability,
                )
                self._governance.facade.record_final(
                    uow,
                    outcome,
                    journal,
                    trace_status=trace_status_for(finish.status.value),
                    sink_error=sink_error,
                    fault=fault,
                )
                if finish.policy_check is not None:
                    uow.policy_checks.add(run.tenant_id, run.id, finish.policy_check)
                self._acks_within(uow, journal.acks)
                uow.outbox.add(journal.events)
                self._settle_swept(uow, final)
                fault("commit")
                uow.commit()
        except BaseException as exc:
            self._roll_back(journal.acks, compensations, exc, now)
            if isinstance(exc, LeaseLostError):
                raise
            raise TransactionFailed(
                f"completion of run {run.id} failed at {phase.value}: {exc}",
                phase=phase.value,
                partial_results=dict(journal.results),
                cause=exc,
            ) from exc
        phase = CompletionPhase.COMMITTED
        self._acks_after(journal.acks)
        if self._relay_wakeup is not None:
            self._relay_wakeup.notify()
        return CompletionResult(run.id, finish.status, phase, journal.results)

    def record_unclaimed(self, uow: UnitOfWork, run: Run) -> list[DomainAck]:
        """Governance of a run that ends without a worker — denied at T0, or cancelled
        while queued — in the caller's transaction: incident decision, evaluation, trace
        and finalize, so such a run is never stranded and reconciles clean. Returns the
        acks the caller hands to :meth:`acks_committed` once it has committed."""
        now = self._clock.now_ms()
        journal = Journal(run.tenant_id, run.id, now)
        risk = self._governance.facade.record_final(
            uow,
            from_run(run),
            journal,
            trace_status=trace_status_for(run.status.value),
            sink_error=None,
        )
        uow.runs.set_governance_status(
            run.id, risk_level=risk.value, observability_status=run.observability_status
        )
        self._acks_within(uow, journal.acks)
        uow.outbox.add(journal.events)
        self._settle_swept(uow, run)
        return journal.acks

    def acks_committed(self, acks: list[DomainAck]) -> None:
        self._acks_after(acks)
        if self._relay_wakeup is not None:
            self._relay_wakeup.notify()

    def open_claimed(self, uow: UnitOfWork, runs: list[Run]) -> list[DomainAck]:
        """In the claiming transaction: open the traces of runs claimed for the first time
        (start_trace acks, run.started and trace.started events) in a few batch
        statements. Returns the acks for :meth:`acks_committed`. Reclaimed runs are opened
        by :meth:`start`, which tolerates a trace already there."""
        fresh = [r for r in runs if r.claim_epoch == 1]
        if not fresh:
            return []
        now = self._clock.now_ms()
        uow.traces.start_fresh([(r.id, r.tenant_id) for r in fresh], now_ms=now)
        acks: list[DomainAck] = []
        emitted: list[Event] = []
        for run in fresh:
            journal = Journal(run.tenant_id, run.id, now)
            journal.ack("logs", "start_trace", run.id)
            journal.event(events.TRACE_STARTED)
            journal.event(events.RUN_STARTED, attempt=run.attempt)
            acks += journal.acks
            emitted += journal.events
        self._acks_within(uow, acks)
        uow.outbox.add(emitted)
        return acks

    def start(self, run: Run) -> None:
        """Open the run's trace when execution begins (once, whatever the attempt): the
        start_trace ack and the run.started / trace.started events, in one transaction."""
        now = self._clock.now_ms()
        journal = Journal(run.tenant_id, run.id, now)
        with self._uow() as uow:
            if not self._governance.facade.traces.start(uow, journal):
                return
            journal.event(events.RUN_STARTED, attempt=run.attempt)
            self._acks_within(uow, journal.acks)
            uow.outbox.add(journal.events)
            uow.commit()
        self._acks_after(journal.acks)
        try:
            self._sink.export(
                "trace.started", trace_of(run, TraceStatus.STARTED, started_at_ms=now, now_ms=None)
            )
        except TraceSinkError as exc:
            # The completion exports the whole trace again and applies the mode then.
            log.warning("trace sink failed at start of run %s: %s", run.id, exc)

    def _settle_swept(self, uow: UnitOfWork, run: Run) -> None:
        """A run the audit sweep judged before it finished (stale) is judged again, with
        the acks just written, in this same transaction (``settle_finished_run``)."""
        settle_finished_run(
            uow,
            run.id,
            run.tenant_id,
            status=run.status.value,
            now_ms=self._clock.now_ms(),
            store_in_database=self._acks_in_tx,
        )

    def _acks_within(self, uow: UnitOfWork, acks: list[DomainAck]) -> None:
        """Acks commit or roll back with the work they report: into the SQL audit store,
        or into the durable hand-off that :meth:`_acks_after` forwards to another store."""
        if self._acks_in_tx:
            uow.audit.add_acks(acks)
        elif acks:
            uow.audit.hand_off_acks(acks)

    def _acks_after(self, acks: list[DomainAck]) -> None:
        """Other stores (Redis, memory) take the acks once the work has committed.

        The acks are already durable in the hand-off, so a store fault must not turn into
        a failed run: this forwards them at once, best effort and never raising; what the
        store refuses stays pending and the forwarder loop (``BackgroundServices``) sends
        it when the store is back (DESIGN invariant 9)."""
        if self._forwarder is not None:
            self._forwarder.forward(acks)

    def _export_trace(
        self, run: Run, finish: Finish, now: int, compensations: list[Callable[[], None]]
    ) -> tuple[Finish, str | None, str]:
        """Export the trace before the transaction (it cannot join one) and apply the
        observability mode when the sink fails."""
        status = trace_status_for(finish.status.value)
        trace = trace_of(run, status, started_at_ms=run.started_at_ms or now, now_ms=now)
        try:
            self._sink.export("trace.completed", trace)
        except TraceSinkError as exc:
            verdict = on_sink_failure(self._mode, str(exc))
            log.warning("trace sink failed for run %s (%s): %s", run.id, self._mode.value, exc)
            if verdict.fail_run and finish.status is RunStatus.SUCCEEDED:
                chain = path(
                    (run.phase, RunStatus.RUNNING),
                    (Phase.FAILED, RunStatus.FAILED, "trace sink failed (STRICT)"),
                    at_ms=now,
                )
                finish = Finish(chain, None, "trace_sink_error", str(exc))
            return finish, str(exc), verdict.observability_status
        compensations.append(lambda: self._sink.export("trace.rolled_back", trace))
        return finish, None, run.observability_status

    def _roll_back(
        self,
        acks: list[DomainAck],
        compensations: list[Callable[[], None]],
        cause: BaseException,
        now: int,
    ) -> None:
        for compensate in reversed(compensations):
            try:
                compensate()
            except Exception:  # a compensation failing must not hide the original cause
                log.exception("compensation failed")
        if not acks:
            return
        reason = f"completion rolled back: {type(cause).__name__}: {cause}"
        rolled = [audit.rolled_back(ack, reason, now) for ack in acks]
        try:
            with self._uow() as uow:
                self._acks_within(uow, rolled)
                uow.commit()
            self._acks_after(rolled)
        except Exception:  # reported: the reconciler will show the actions as missing
            log.exception("could not record ROLLED_BACK acks for run %s", acks[0].run_id)
