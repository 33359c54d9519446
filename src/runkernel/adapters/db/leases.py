"""Process leases: which process does a job that must have one doer at a time (the
outbox relay, the ack forwarder, the audit sweep). One row per job name; it takes the
connection of a unit of work and never commits, rolls back or begins (DESIGN invariant 3).

Acquiring is ONE statement: insert the row, or take it over if it expired (or is already
the caller's) — ``INSERT … ON CONFLICT (name) DO UPDATE … WHERE``. PostgreSQL decides the
conflict under the row's lock and re-checks the WHERE on the row a racing winner just
wrote; SQLite runs it inside the IMMEDIATE transaction of the unit of work. Either way two
processes racing for a free lease get one winner.

A lease is held while ``now < expires_at_ms``. Times are the callers' clocks: as for run
leases, the machines' clocks must agree to well within the lease's time to live.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from runkernel.adapters.db.tables import process_leases as _leases

_NAME = _leases.c.name == bindparam("p_name")
_HELD_BY = _NAME & (_leases.c.holder == bindparam("p_holder"))
_RENEW = (
    update(_leases)
    .where(_HELD_BY, _leases.c.expires_at_ms > bindparam("p_now"))
    .values(expires_at_ms=bindparam("p_until"))
    .returning(_leases.c.name)
)
_RELEASE = delete(_leases).where(_HELD_BY).returning(_leases.c.name)
_GET = select(_leases).where(_NAME)


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at_ms: int
    acquired_at_ms: int


class SqlLeaseRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._acquire = _acquire_statement(conn.dialect.name)

    def acquire(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take lease ``name`` for ``ttl_ms`` if it is free, expired or already
        ``holder``'s (then it is renewed and keeps its ``acquired_at_ms``)."""
        row = self._conn.execute(
            self._acquire,
            {"name": name, "holder": holder, "expires_at_ms": now_ms + ttl_ms, "now": now_ms},
        ).first()
        return row is not None

    def renew(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Extend ``holder``'s unexpired lease; False if it expired or someone else holds
        it (then the caller must stop the job at once)."""
        params = {"p_name": name, "p_holder": holder, "p_now": now_ms, "p_until": now_ms + ttl_ms}
        return self._conn.execute(_RENEW, params).first() is not None

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up so another process takes it at once; False if not held."""
        params = {"p_name": name, "p_holder": holder}
        return self._conn.execute(_RELEASE, params).first() is not None

    def get(self, name: str) -> Lease | None:
        row = self._conn.execute(_GET, {"p_name": name}).first()
        if row is None:
            return None
        return Lease(row.name, row.holder, int(row.expires_at_ms), int(row.acquired_at_ms))


@lru_cache(maxsize=2)
def _acquire_statement(dialect_name: str) -> Insert:
    build = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    insert = build(_leases).values(
        name=bindparam("name"),
        holder=bindparam("holder"),
        expires_at_ms=bindparam("expires_at_ms"),
        acquired_at_ms=bindparam("now"),
    )
    new = insert.excluded
    mine = _leases.c.holder == new.holder
    return insert.on_conflict_do_update(
        index_elements=[_leases.c.name],
        set_={
            "holder": new.holder,
            "expires_at_ms": new.expires_at_ms,
            "acquired_at_ms": case((mine, _leases.c.acquired_at_ms), else_=new.acquired_at_ms),
        },
        # excluded.acquired_at_ms is the caller's now: the row's lease has run out by then.
        where=or_(mine, _leases.c.expires_at_ms <= new.acquired_at_ms),
    ).returning(_leases.c.name)
