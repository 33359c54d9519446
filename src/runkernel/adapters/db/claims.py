"""Claiming runs exactly once.

PostgreSQL: one ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)``: concurrent workers
skip each other's rows instead of waiting on them.
SQLite: one ``UPDATE … WHERE id IN (SELECT …) RETURNING`` inside the IMMEDIATE
transaction the unit of work opened, so the whole database is the lock.

A run is claimable when it is queued and authorized, or running with an expired lease
(its worker died). Each claim bumps ``attempt``, the fencing token every later write is
conditioned on, and is logged in ``run_claims`` (one row per (run, attempt)).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, text

from runkernel.adapters.db.tables import run_claims, run_transitions, runs

_CLAIMABLE = """
    (status = 'queued' AND phase = 'AUTHORIZED')
    OR (status = 'running' AND lease_expires_at_ms < :now)
"""

_SET = """
    status = 'running',
    phase = CASE WHEN status = 'queued' THEN 'EXECUTING' ELSE phase END,
    attempt = attempt + 1,
    lease_owner = :worker,
    lease_expires_at_ms = :expires,
    started_at_ms = COALESCE(started_at_ms, :now),
    updated_at_ms = :now
"""

_POSTGRES = text(
    f"""
    UPDATE runs SET {_SET}
    WHERE id IN (
        SELECT id FROM runs WHERE {_CLAIMABLE}
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING *
    """
).columns(*runs.c)

_SQLITE = text(
    f"""
    UPDATE runs SET {_SET}
    WHERE id IN (SELECT id FROM runs WHERE {_CLAIMABLE} ORDER BY id LIMIT :limit)
    RETURNING *
    """
).columns(*runs.c)


def claim_next_runs(
    conn: Connection, dialect: str, worker_id: str, limit: int, now_ms: int, lease_ms: int
) -> list[Row[Any]]:
    statement = _POSTGRES if dialect == "postgresql" else _SQLITE
    params = {"worker": worker_id, "limit": limit, "now": now_ms, "expires": now_ms + lease_ms}
    rows = list(conn.execute(statement, params))
    if not rows:
        return rows
    conn.execute(
        insert(run_claims),
        [
            {"run_id": r.id, "attempt": r.attempt, "worker_id": worker_id, "claimed_at_ms": now_ms}
            for r in rows
        ],
    )
    conn.execute(
        insert(run_transitions),
        [_claim_transition(r, worker_id, now_ms) for r in rows],
    )
    return rows


def _claim_transition(row: Row[Any], worker_id: str, now_ms: int) -> dict[str, Any]:
    # attempt 1 is the first claim, from AUTHORIZED; later ones take over an expired lease.
    first = row.attempt == 1
    return {
        "run_id": row.id,
        "from_phase": "AUTHORIZED" if first else row.phase,
        "from_status": "queued" if first else "running",
        "to_phase": row.phase,
        "to_status": "running",
        "reason": (
            f"claimed by {worker_id} (attempt 1)"
            if first
            else f"lease expired; reclaimed by {worker_id} (attempt {row.attempt})"
        ),
        "at_ms": now_ms,
    }
