"""``AckForwarder``: carries acks for a non-SQL audit store (Redis) from their durable
hand-off in the database to the store (DESIGN invariant 9: a fault in Redis loses no ack).

The work and its acks commit together (``uow.audit.hand_off_acks``). After commit the
completion forwards its own acks at once (:meth:`forward`, best effort, never raises);
whatever a store outage left behind is forwarded by a background loop
(:meth:`forward_once`) once the store is back. A row is marked forwarded only after the
store took the ack; a crash in between forwards it again, and the store's ``add_ack`` is
idempotent by ack id, so delivery is at least once and storage exactly once.

Acks of a run the audit sweep already judged (it finished after being called stale)
change the verdict: before its acks are marked, the run is reconciled again in the store
and the stored result replaced, so it never disagrees with the live one. If that fails
the acks stay unmarked, and the loop forwards them (the store dedupes) and tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runkernel.domain.audit import DomainAck, reconcile
from runkernel.services.ports import AuditStore, Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)


class AckForwarder:
    def __init__(self, uow: UnitOfWorkFactory, store: AuditStore, clock: Clock) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock

    def forward(self, acks: Sequence[DomainAck]) -> int:
        """Right after commit: copy ``acks`` (already handed off) to the store and mark
        them. Never raises: what is not forwarded now stays pending for the loop."""
        if not acks:
            return 0
        done: list[str] = []
        try:
            for ack in acks:
                self._store.add_ack(ack)
                done.append(ack.id)
        except Exception:  # the store is down: the background loop retries
            failed = acks[len(done)]
            log.warning(
                "audit store refused ack %s of run %s; %d of %d acks left for the forwarder loop",
                failed.id,
                failed.run_id,
                len(acks) - len(done),
                len(acks),
                exc_info=True,
            )
        done = self._refreshed(acks, done)
        try:
            self._mark(done)
        except Exception:  # unmarked rows are forwarded again; the store dedupes
            log.exception("could not mark %d forwarded acks", len(done))
        return len(done)

    def forward_once(self, limit: int = 100) -> int:
        """Forward up to ``limit`` pending acks, oldest first; returns how many went to the
        store (0: nothing pending). A store error propagates after the acks forwarded
        before it are marked."""
        with self._uow(read_only=True) as uow:
            pending = uow.audit.pending_hand_offs(limit)
        done: list[str] = []
        try:
            for ack in pending:
                self._store.add_ack(ack)
                done.append(ack.id)
        finally:
            done = self._refreshed(pending, done)
            self._mark(done)
        return len(done)

    def _refreshed(self, acks: Sequence[DomainAck], done: list[str]) -> list[str]:
        """``done`` without the acks of runs whose stored verdict could not be refreshed."""
        stored = set(done)
        runs = {a.run_id: a.tenant_id for a in acks if a.id in stored}
        failed: set[str] = set()
        for run_id, tenant_id in sorted(runs.items()):
            try:
                if self._store.reconciliation(run_id) is None:
                    continue  # not swept yet: the sweep will judge it with these acks
                result = reconcile(
                    self._store.expectations(run_id),
                    self._store.acks(run_id),
                    now_ms=self._clock.now_ms(),
                )
                self._store.save_reconciliation(result, tenant_id, replace=True)
            except Exception:  # left unmarked: the loop forwards them again and retries this
                log.warning(
                    "could not re-evaluate the stored audit of run %s", run_id, exc_info=True
                )
                failed.add(run_id)
        return [a.id for a in acks if a.id in stored and a.run_id not in failed]

    def _mark(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._uow() as uow:
            uow.audit.mark_forwarded(ids, self._clock.now_ms())
            uow.commit()
