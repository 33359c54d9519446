"""``AckForwarder``: carries acks for a non-SQL audit store (Redis) from their durable
hand-off in the database to the store (DESIGN invariant 9: a fault in Redis loses no ack).

The work and its acks commit together (``uow.audit.hand_off_acks``). After commit the
completion forwards its own acks at once (:meth:`forward`, best effort, never raises);
whatever a store outage left behind is forwarded by a background loop
(:meth:`forward_once`) once the store is back. A row is marked forwarded only after the
store took the ack; a crash in between forwards it again, and the store's ``add_ack`` is
idempotent by ack id, so delivery is at least once and storage exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runkernel.domain.audit import DomainAck
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
            self._mark(done)
        return len(done)

    def _mark(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._uow() as uow:
            uow.audit.mark_forwarded(ids, self._clock.now_ms())
            uow.commit()
