"""The read side of a run's governance record: its audit (expectations, acks, verdict),
the stored reconciliations of a tenant, and its trace.

Tenant calls check that the run is the caller's before reading anything keyed by run id
alone (the audit store and the trace table are), so another tenant's run is a 404.
:meth:`AuditService.inspect` is the operator's unscoped view (``runkernel audit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from runkernel.domain.audit import (
    AuditExpectation,
    DomainAck,
    ReconciliationResult,
    ReconciliationStatus,
    expectations_now,
    reconcile,
)
from runkernel.domain.permissions import Permission, require
from runkernel.domain.records import Principal, Run
from runkernel.domain.traces import Trace, TraceStatus, trace_of
from runkernel.errors import ConflictError, NotFoundError
from runkernel.services.paging import check_choice, check_limit
from runkernel.services.ports import AuditStore, Clock, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class RunAudit:
    """``expectations`` are as they stand now (``domain.audit.expectations_now``); ``live``
    is reconciled now from exactly those and the acks shown (None when the run has
    neither); ``stored`` is what the sweep recorded after the deadline (and the run's
    completion re-evaluated, if it finished later)."""

    run_id: str
    run: Run | None
    expectations: list[AuditExpectation]
    acks: list[DomainAck]
    live: ReconciliationResult | None
    stored: ReconciliationResult | None


@dataclass(frozen=True, slots=True)
class RunTrace:
    trace: Trace
    sink_error: str | None


class AuditService:
    def __init__(self, uow: UnitOfWorkFactory, store: AuditStore, clock: Clock) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock

    def run_audit(self, principal: Principal, run_id: str) -> RunAudit:
        require(principal, Permission.READ_AUDIT)
        with self._uow(read_only=True) as uow:
            run = uow.runs.get(principal.tenant_id, run_id, details=False)
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return self._audit(run_id, run)

    def inspect(self, run_id: str) -> RunAudit:
        """Any tenant's run, for operators; ``NotFoundError`` when nothing is recorded."""
        with self._uow(read_only=True) as uow:
            run = uow.runs.get_for_worker(run_id)
        audit = self._audit(run_id, run)
        if run is None and not (audit.expectations or audit.acks or audit.stored):
            raise NotFoundError(f"no run {run_id!r} and no audit record of it")
        return audit

    def reconciliations(
        self, principal: Principal, *, status: str | None = None, limit: int = 50
    ) -> list[ReconciliationResult]:
        """The tenant's stored results, newest first."""
        require(principal, Permission.READ_AUDIT)
        check_choice("status", status, ReconciliationStatus)
        check_limit(limit)
        return self._store.reconciliations(
            status=ReconciliationStatus(status) if status else None,
            tenant_id=principal.tenant_id,
            limit=limit,
        )

    def trace(self, principal: Principal, run_id: str) -> RunTrace:
        """The run's trace, one span per executed step; none before execution began (a
        ``ConflictError``: the run exists, its trace does not yet)."""
        require(principal, Permission.READ_RUNS)
        with self._uow(read_only=True) as uow:
            run = uow.runs.get(principal.tenant_id, run_id)
            if run is None:
                raise NotFoundError(f"no run {run_id!r}")
            row = uow.traces.get(run_id)
        if row is None:
            raise ConflictError(
                f"run {run_id!r} has no trace yet (it is {run.status.value}); "
                "a trace starts when execution begins",
                code="trace_pending",
            )
        trace = trace_of(
            run,
            TraceStatus(row["status"]),
            started_at_ms=row["started_at_ms"],
            now_ms=row["completed_at_ms"],
        )
        return RunTrace(trace, row["sink_error"])

    def _audit(self, run_id: str, run: Run | None) -> RunAudit:
        expectations, acks = self._store.expectations(run_id), self._store.acks(run_id)
        # Reconciled here rather than by AuditReconciler.reconcile_now, which reads the
        # store again: an ack landing in between would make the verdict disagree with
        # the lists shown next to it.
        now = self._clock.now_ms()
        live = reconcile(expectations, acks, now_ms=now) if expectations or acks else None
        # As they stand now, not as the store last settled them: an ack shows its
        # expectation ACKED at once, not only after the deadline sweep.
        shown = expectations_now(expectations, acks, now_ms=now)
        return RunAudit(run_id, run, shown, acks, live, self._store.reconciliation(run_id))
