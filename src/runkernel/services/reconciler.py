"""The audit sweep: reconcile every run past its deadline, once.

For each run whose finalize deadline passed and that has no stored result, the sweep
reconciles expectations against acks, stores the result and — when it is not clean —
opens a STALE_RUN or AUDIT_MISSING incident and writes ``audit.reconciliation.*`` events.
With the SQL audit store all of that is one transaction, and storing the result is what
makes a run "done": of two sweepers, exactly one wins it, so each run gets one incident
and one set of events however many sweeps run.

A run may still finish after the sweep called it stale (a slow worker, a reclaim). Its
completion then calls :func:`settle_finished_run` in the completion's own transaction:
the stored result is reconciled again and replaced, what is still not clean is flagged,
and the STALE_RUN incident is resolved with a note, so the stored verdict and the live
one never disagree. The sweep reads a run's record only after locking the run's row,
which the completion holds from its first write: each sees all of the other or none.
With a non-SQL store the acks reach the store after the commit, so the store's result is
re-evaluated when they do (``AckForwarder``) and the note says so.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from runkernel.domain import events, incidents
from runkernel.domain.audit import FINALIZE_RUN, ReconciliationResult, reconcile
from runkernel.domain.events import new_event
from runkernel.domain.ids import new_id
from runkernel.domain.incidents import (
    Category,
    Incident,
    IncidentStatus,
    audit_missing_incident,
    stale_incident,
)
from runkernel.domain.pauses import moved_deadline
from runkernel.services.incidents import resolved_event
from runkernel.services.ports import AuditStore, Clock, UnitOfWork, UnitOfWorkFactory, WakeupSignal

log = logging.getLogger(__name__)

RESOLVED_BY = "runkernel"  # the resolver named in incident.resolved when no key did it


class ReconcileMetrics(Protocol):
    def reconciled(self, result: ReconciliationResult, duration_s: float) -> None: ...


class AuditReconciler:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: AuditStore,
        clock: Clock,
        metrics: ReconcileMetrics,
        *,
        store_in_database: bool,
        relay_wakeup: WakeupSignal | None = None,
    ) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._in_db = store_in_database
        self._relay_wakeup = relay_wakeup

    def reconcile_now(self, run_id: str) -> ReconciliationResult | None:
        """A live reconciliation of one run (not stored); None if the run has no audit."""
        expectations, acks = self._store.expectations(run_id), self._store.acks(run_id)
        if not expectations and not acks:
            return None
        return reconcile(expectations, acks, now_ms=self._clock.now_ms())

    def sweep(self, *, limit: int = 100) -> list[ReconciliationResult]:
        """Reconcile the runs past their deadline; returns the results this sweep stored."""
        done: list[ReconciliationResult] = []
        now = self._clock.now_ms()
        for run_id in self._store.get_pending_run_ids(now, limit=limit):
            started = time.perf_counter()
            try:
                if self._live_through_pauses(run_id, now):
                    continue
                result = self._settle(run_id)
            except Exception:  # one broken run must not stop the sweep of the others
                log.exception("reconciling run %s failed; the next sweep retries it", run_id)
                continue
            if result is not None:
                self._metrics.reconciled(result, time.perf_counter() - started)
                done.append(result)
        if done and self._relay_wakeup is not None:
            self._relay_wakeup.notify()
        return done

    def _live_through_pauses(self, run_id: str, now: int) -> bool:
        """Whether the run's liveness deadline, moved by its time paused, is still ahead."""
        with self._uow(read_only=True) as uow:
            pauses = uow.pauses.for_run(run_id)
        if not pauses:
            return False
        deadlines = [
            e.deadline_ms
            for e in self._store.expectations(run_id)
            if e.key() == FINALIZE_RUN and e.deadline_ms is not None
        ]
        return bool(deadlines) and now <= moved_deadline(min(deadlines), pauses, now)

    def _settle(self, run_id: str) -> ReconciliationResult | None:
        now = self._clock.now_ms()
        if self._in_db:
            return self._settle_in_database(run_id, now)
        expectations = self._store.expectations(run_id)
        result = reconcile(expectations, self._store.acks(run_id), now_ms=now)
        tenant_id = expectations[0].tenant_id if expectations else None
        with self._uow() as uow:
            if not result.is_clean():
                flag(uow, result, tenant_id, now)
            uow.commit()
        # Another store is told only after the incident committed: if the sweep dies in
        # between, the run is still pending and the next sweep redoes it (the incident's
        # uniqueness keeps that to one incident and one set of events).
        if not self._store.save_reconciliation(result, tenant_id):
            return None
        _log_unclean(result)
        return result

    def _settle_in_database(self, run_id: str, now: int) -> ReconciliationResult | None:
        with self._uow() as uow:
            # Read after the lock: a completion of this run commits wholly before this
            # reconciliation or sees its stored result (settle_finished_run).
            uow.runs.lock(run_id)
            expectations = uow.audit.expectations(run_id)
            result = reconcile(expectations, uow.audit.acks(run_id), now_ms=now)
            tenant_id = expectations[0].tenant_id if expectations else None
            if not uow.audit.save_reconciliation(result, tenant_id):
                return None  # another sweeper stored it first
            if not result.is_clean():
                flag(uow, result, tenant_id, now)
            uow.commit()
        _log_unclean(result)
        return result


def settle_finished_run(
    uow: UnitOfWork,
    run_id: str,
    tenant_id: str,
    *,
    status: str,
    now_ms: int,
    store_in_database: bool,
) -> None:
    """In the transaction that makes a run final, after its acks: if the audit sweep
    already judged the run, judge it again and resolve its STALE_RUN incident."""
    verdict = None
    if store_in_database:
        if uow.audit.reconciliation(run_id) is None:
            return  # not swept: no stored result, and so no STALE_RUN incident either
        result = reconcile(uow.audit.expectations(run_id), uow.audit.acks(run_id), now_ms=now_ms)
        uow.audit.save_reconciliation(result, tenant_id, replace=True)
        if not result.is_clean():
            flag(uow, result, tenant_id, now_ms)
        verdict = result.status.value
    note = incidents.stale_run_finished_note(status, verdict)
    for found in uow.incidents.for_run(run_id):
        if found.category is not Category.STALE_RUN or found.status is IncidentStatus.RESOLVED:
            continue
        resolved = incidents.resolve(found, now_ms, note=note)
        # A person resolving it at this very moment wins; theirs is as good as ours.
        if uow.incidents.update(resolved, expected_status=found.status):
            uow.outbox.add([resolved_event(resolved, resolved_by=RESOLVED_BY, now_ms=now_ms)])


def flag(uow: UnitOfWork, result: ReconciliationResult, tenant_id: str | None, now: int) -> None:
    """The incident and ``audit.reconciliation.*`` events of a result that is not clean,
    once per run and category (a repeat finds the incident there and adds nothing)."""
    missing = tuple(f"{d}/{a}" for d, a in result.missing_actions)
    incident: Incident
    if result.stale_run:
        incident = stale_incident(result.run_id, tenant_id, missing, now_ms=now, new_id=new_id)
    else:
        drift = tuple(f"{d}/{a}" for d, a in result.drift_actions)
        incident = audit_missing_incident(
            result.run_id, tenant_id, missing, drift_actions=drift, now_ms=now, new_id=new_id
        )
    if not uow.incidents.add(incident):
        return  # flagged by an earlier sweep that could not store its result
    payload = {"reconciliation": result.to_dict(), "incident_id": incident.id}
    topics = []
    if result.stale_run:
        topics.append(events.AUDIT_RECONCILIATION_STALE)
    if result.missing_actions and not result.stale_run:
        topics.append(events.AUDIT_RECONCILIATION_MISSING)
    if result.drift_actions:
        topics.append(events.AUDIT_RECONCILIATION_DRIFT)
    uow.outbox.add(
        [
            new_event(topic, tenant_id=tenant_id, run_id=result.run_id, payload=payload, now_ms=now)
            for topic in topics
        ]
    )


def _log_unclean(result: ReconciliationResult) -> None:
    if not result.is_clean():
        log.warning(
            "run %s is %s: missing %s, drift %s",
            result.run_id,
            result.status.value,
            result.missing_actions,
            result.drift_actions,
        )
