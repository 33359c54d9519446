"""The audit sweep: reconcile every run past its deadline, once.

For each run whose finalize deadline passed and that has no stored result, the sweep
reconciles expectations against acks, stores the result and — when it is not clean —
opens a STALE_RUN or AUDIT_MISSING incident and writes ``audit.reconciliation.*`` events.
With the SQL audit store all of that is one transaction, and storing the result is what
makes a run "done": of two sweepers, exactly one wins it, so each run gets one incident
and one set of events however many sweeps run.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from runkernel.domain import events
from runkernel.domain.audit import ReconciliationResult, reconcile
from runkernel.domain.events import new_event
from runkernel.domain.ids import new_id
from runkernel.domain.incidents import Incident, audit_missing_incident, stale_incident
from runkernel.services.ports import AuditStore, Clock, UnitOfWork, UnitOfWorkFactory, WakeupSignal

log = logging.getLogger(__name__)


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
        for run_id in self._store.get_pending_run_ids(self._clock.now_ms(), limit=limit):
            started = time.perf_counter()
            try:
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

    def _settle(self, run_id: str) -> ReconciliationResult | None:
        now = self._clock.now_ms()
        expectations = self._store.expectations(run_id)
        result = reconcile(expectations, self._store.acks(run_id), now_ms=now)
        tenant_id = expectations[0].tenant_id if expectations else None
        with self._uow() as uow:
            if self._in_db and not uow.audit.save_reconciliation(result, tenant_id):
                return None  # another sweeper stored it first
            if not result.is_clean():
                self._flag(uow, result, tenant_id, now)
            uow.commit()
        # Another store is told only after the incident committed: if the sweep dies in
        # between, the run is still pending and the next sweep redoes it (the incident's
        # uniqueness keeps that to one incident and one set of events).
        if not self._in_db and not self._store.save_reconciliation(result, tenant_id):
            return None
        if not result.is_clean():
            log.warning(
                "run %s is %s: missing %s, drift %s",
                run_id,
                result.status.value,
                result.missing_actions,
                result.drift_actions,
            )
        return result

    def _flag(
        self, uow: UnitOfWork, result: ReconciliationResult, tenant_id: str | None, now: int
    ) -> None:
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
                new_event(
                    topic, tenant_id=tenant_id, run_id=result.run_id, payload=payload, now_ms=now
                )
                for topic in topics
            ]
        )
