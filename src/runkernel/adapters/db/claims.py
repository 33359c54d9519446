"""Claiming runs exactly once.

PostgreSQL: one statement — ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``
so concurrent workers skip each other's rows instead of waiting, with the claim log
and transitions written by data-modifying CTEs in the same round trip.
SQLite: ``UPDATE … WHERE id IN (SELECT …) RETURNING`` inside the IMMEDIATE transaction
the unit of work opened (the whole database is the lock), then the two log inserts.

A run is claimable when it is queued and authorized and its tenant is active, or running
with an expired lease (its worker died). Each claim bumps ``claim_epoch``, the fencing
token every later write is conditioned on, and is logged in ``run_claims`` (one row per
(run, epoch)). Both kinds of claim today also count an attempt: a first claim, or the
takeover of an expired lease.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, text

from runkernel.adapters.db.tables import runs

# A run of a tenant that is not active (suspended) is never started: it stays queued
# until the tenant is active again. A takeover still happens: that run has started, and
# what stops it is the check before its next step, not a lease left to lapse forever.
_CLAIMABLE = """
    (status = 'queued' AND phase = 'AUTHORIZED' AND EXISTS (
        SELECT 1 FROM tenants WHERE tenants.id = runs.tenant_id AND tenants.status = 'active'
    ))
    OR (status = 'running' AND lease_expires_at_ms < :now)
"""

# Named, not ``*``: a column added by a migration sits at the end of the stored table but
# wherever ``tables.py`` declares it, and ``.columns(*runs.c)`` matches by position.
_RETURNED = ", ".join(c.name for c in runs.c)

_SET = """
    status = 'running',
    phase = CASE WHEN status = 'queued' THEN 'EXECUTING' ELSE phase END,
    attempt = attempt + 1,
    claim_epoch = claim_epoch + 1,
    lease_owner = :worker,
    lease_expires_at_ms = :expires,
    started_at_ms = COALESCE(started_at_ms, :now),
    updated_at_ms = :now
"""

# Epoch 1 is the first claim, from AUTHORIZED; later ones take over an expired lease.
_LOG_CLAIMS = """
    INSERT INTO run_claims (run_id, claim_epoch, attempt, worker_id, claimed_at_ms)
    SELECT id, claim_epoch, attempt, :worker, :now FROM {source}
"""
_LOG_TRANSITIONS = """
    INSERT INTO run_transitions
        (run_id, from_phase, from_status, to_phase, to_status, reason, at_ms)
    SELECT id,
        CASE WHEN claim_epoch = 1 THEN 'AUTHORIZED' ELSE phase END,
        CASE WHEN claim_epoch = 1 THEN 'queued' ELSE 'running' END,
        phase,
        'running',
        CASE WHEN claim_epoch = 1
            THEN 'claimed by ' || CAST(:worker AS TEXT) || ' (attempt 1)'
            ELSE 'lease expired; reclaimed by ' || CAST(:worker AS TEXT)
                || ' (attempt ' || CAST(attempt AS TEXT) || ')'
        END,
        :now
    FROM {source}
"""

_POSTGRES = text(
    f"""
    WITH claimed AS (
        UPDATE runs SET {_SET}
        WHERE id IN (
            SELECT id FROM runs WHERE {_CLAIMABLE}
            ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
        )
        RETURNING {_RETURNED}
    ), claim_log AS ({_LOG_CLAIMS.format(source="claimed")}
    ), transition_log AS ({_LOG_TRANSITIONS.format(source="claimed")}
    )
    SELECT {_RETURNED} FROM claimed ORDER BY id
    """
).columns(*runs.c)

_SQLITE = text(
    f"""
    UPDATE runs SET {_SET}
    WHERE id IN (SELECT id FROM runs WHERE {_CLAIMABLE} ORDER BY id LIMIT :limit)
    RETURNING {_RETURNED}
    """
).columns(*runs.c)
_SQLITE_SOURCE = "runs WHERE id IN :ids"
_SQLITE_LOG_CLAIMS = text(_LOG_CLAIMS.format(source=_SQLITE_SOURCE)).bindparams(
    bindparam("ids", expanding=True)
)
_SQLITE_LOG_TRANSITIONS = text(_LOG_TRANSITIONS.format(source=_SQLITE_SOURCE)).bindparams(
    bindparam("ids", expanding=True)
)


def claim_next_runs(
    conn: Connection, dialect: str, worker_id: str, limit: int, now_ms: int, lease_ms: int
) -> list[Row[Any]]:
    params = {"worker": worker_id, "limit": limit, "now": now_ms, "expires": now_ms + lease_ms}
    if dialect == "postgresql":
        return list(conn.execute(_POSTGRES, params))
    rows = list(conn.execute(_SQLITE, params))
    if rows:
        logged = {"worker": worker_id, "now": now_ms, "ids": [r.id for r in rows]}
        conn.execute(_SQLITE_LOG_CLAIMS, logged)
        conn.execute(_SQLITE_LOG_TRANSITIONS, logged)
    return sorted(rows, key=lambda r: str(r.id))
