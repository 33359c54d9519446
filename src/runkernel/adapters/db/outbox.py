"""The transactional outbox: events are rows written in the caller's transaction, so they
exist exactly when the state change they describe was committed. It takes the
connection of a unit of work and never commits, rolls back or begins (DESIGN
invariant 3).

Claiming, PostgreSQL: the oldest unpublished rows whose claim is free or expired are
locked ``FOR UPDATE SKIP LOCKED``, so several relays share the backlog without waiting
on each other. SQLite: the same statement without the lock clause, inside the IMMEDIATE
transaction the unit of work opened (the whole database is the lock; one relay).

Order per run: a row is claimed only if no earlier unpublished row of its run lies
outside this batch. An earlier row that another relay holds (claimed, or locked by its
claim in flight and so skipped) keeps every later row of that run back until it is
published, whichever relay asks. The rule is prefix-closed: if row N of a run is held
back, so is every row after it.

That needs a run's rows to become visible in ``seq`` order. SQLite has one writer at a
time, so they do. On PostgreSQL ``seq`` is drawn at insert, not at commit: a writer must
hold the run's row lock before it adds events of that run (the worker's fenced
``UPDATE runs`` does; the reconciler and API operations should update or ``SELECT … FOR
UPDATE`` the run first), otherwise two concurrent transactions may commit a run's events
out of ``seq`` order and the later one can be published first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, text, update
from sqlalchemy.sql.elements import BindParameter

from runkernel.adapters.db.inserts import insert_rows
from runkernel.adapters.db.tables import outbox
from runkernel.domain.events import Event

_CLAIM = """
    UPDATE outbox SET claimed_by = :relay, claimed_until_ms = :until
    WHERE seq IN (
        WITH candidates AS (
            SELECT seq, run_id FROM outbox
            WHERE published_at_ms IS NULL
              AND (claimed_until_ms IS NULL OR claimed_until_ms < :now)
            ORDER BY seq
            LIMIT :limit {lock}
        )
        SELECT c.seq FROM candidates c
        WHERE c.run_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM outbox earlier
            WHERE earlier.run_id = c.run_id
              AND earlier.seq < c.seq
              AND earlier.published_at_ms IS NULL
              AND earlier.seq NOT IN (SELECT seq FROM candidates)
        )
    )
    RETURNING seq, id, topic, tenant_id, run_id, payload, created_at_ms
"""
_RETURNED = (
    outbox.c.seq,
    outbox.c.id,
    outbox.c.topic,
    outbox.c.tenant_id,
    outbox.c.run_id,
    outbox.c.payload,
    outbox.c.created_at_ms,
)
_CLAIM_POSTGRES = text(_CLAIM.format(lock="FOR UPDATE SKIP LOCKED")).columns(*_RETURNED)
_CLAIM_SQLITE = text(_CLAIM.format(lock="")).columns(*_RETURNED)

_INSERT = insert(outbox)
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
_UNPUBLISHED = outbox.c.published_at_ms.is_(None)
# claimed_by stays on a published row: it records which relay published it.
_MARK_PUBLISHED = (
    update(outbox)
    .where(outbox.c.id.in_(_IDS), _UNPUBLISHED)
    .values(published_at_ms=bindparam("p_now"), claimed_until_ms=None)
)
_RELEASE = (
    update(outbox)
    .where(outbox.c.id.in_(_IDS), outbox.c.claimed_by == bindparam("p_relay"), _UNPUBLISHED)
    .values(claimed_by=None, claimed_until_ms=None)
)
_PENDING = select(func.count()).select_from(outbox).where(_UNPUBLISHED)


class SqlOutboxRepository:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self._conn = conn
        self._claim = _CLAIM_POSTGRES if dialect == "postgresql" else _CLAIM_SQLITE

    def add(self, events: Sequence[Event]) -> None:
        """Insert ``events`` in the caller's transaction: they are published if and only
        if it commits. ``seq`` follows the order of ``events``."""
        if not events:
            return
        insert_rows(
            self._conn,
            outbox,
            [
                {
                    "id": e.id,
                    "topic": e.topic,
                    "tenant_id": e.tenant_id,
                    "run_id": e.run_id,
                    "payload": e.payload,
                    "created_at_ms": e.created_at_ms,
                }
                for e in events
            ],
        )

    def claim_batch(self, relay_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Event]:
        params = {"relay": relay_id, "until": now_ms + lease_ms, "now": now_ms, "limit": limit}
        rows = sorted(self._conn.execute(self._claim, params), key=lambda r: int(r.seq))
        return [_event(row) for row in rows]

    def mark_published(self, ids: Sequence[str], now_ms: int) -> int:
        """Mark ``ids`` published; one already marked (by a relay that took over an
        expired claim) is left as it was. Returns how many rows this call marked."""
        if not ids:
            return 0
        return self._conn.execute(_MARK_PUBLISHED, {"ids": list(ids), "p_now": now_ms}).rowcount

    def release(self, relay_id: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return self._conn.execute(_RELEASE, {"ids": list(ids), "p_relay": relay_id}).rowcount

    def pending_count(self) -> int:
        return int(self._conn.execute(_PENDING).scalar_one())


def _event(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        topic=row.topic,
        tenant_id=row.tenant_id,
        run_id=row.run_id,
        payload=dict(row.payload),
        created_at_ms=int(row.created_at_ms),
    )
