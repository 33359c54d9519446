"""Claiming runs exactly once.

PostgreSQL: one statement — the claimable rows are locked ``FOR UPDATE SKIP LOCKED`` so
concurrent workers skip each other's rows instead of waiting, then updated, with the claim
log written by a data-modifying CTE in the same round trip. SQLite: the claimable rows are
read, then claimed by ``UPDATE … RETURNING``, inside the IMMEDIATE transaction the unit of
work opened (the whole database is the lock), then the claim log is written.

A run is claimable when it is queued and authorized and its tenant is active, running
with an expired lease (its worker died), or paused with its resume granted (and its
tenant active: a suspended tenant's paused runs stay paused). Each claim bumps
``claim_epoch``, the fencing token every later write is conditioned on, and is logged in
``run_claims`` (one row per (run, epoch)). What the claim does to the run — its state,
its transition and reason, whether it counts an attempt — is decided by
``domain.claims``; the state each run was found in comes back with it, and the
transitions the domain builds from it are inserted in the same transaction (one more
statement). A takeover releases the budget reservation the dead worker held for its step
in flight (DESIGN invariant 7), in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, String, bindparam, column, text

from runkernel.adapters.db.inserts import insert_rows
from runkernel.adapters.db.tables import run_transitions, runs
from runkernel.domain.claims import ATTEMPT_COUNTING_STATUSES, CLAIMED, claim_transition
from runkernel.domain.records import TenantStatus
from runkernel.domain.runs import Phase, RunStatus

# A run of a tenant that is not active (suspended) is never started: it stays queued
# until the tenant is active again. A takeover still happens: that run has started, and
# what stops it is the check before its next step, not a lease left to lapse forever.
_TENANT_ACTIVE = f"""EXISTS (
    SELECT 1 FROM tenants
    WHERE tenants.id = runs.tenant_id AND tenants.status = '{TenantStatus.ACTIVE.value}'
)"""
_CLAIMABLE = f"""
    (status = 'queued' AND phase = 'AUTHORIZED' AND {_TENANT_ACTIVE})
    OR (status = 'running' AND phase = 'EXECUTING' AND lease_expires_at_ms < :now)
    OR (status = 'paused' AND phase = 'EXECUTING' AND resume_requested_at_ms IS NOT NULL
        AND {_TENANT_ACTIVE})
"""

# Named, not ``*``: a column added by a migration sits at the end of the stored table but
# wherever ``tables.py`` declares it, and ``.columns(*runs.c)`` matches by position.
_RETURNED = ", ".join(f"runs.{c.name}" for c in runs.c)
_FOUND_IN = (column("from_phase", String), column("from_status", String))

# The values are the domain's, rendered once: literals of its own enums.
_COUNTING = ", ".join(f"'{s.value}'" for s in sorted(ATTEMPT_COUNTING_STATUSES))
_SET = f"""
    status = '{CLAIMED[1].value}',
    phase = '{CLAIMED[0].value}',
    attempt = attempt + CASE WHEN runs.status IN ({_COUNTING}) THEN 1 ELSE 0 END,
    claim_epoch = claim_epoch + 1,
    reserved_micros = 0,
    resume_requested_at_ms = NULL,
    lease_owner = :worker,
    lease_expires_at_ms = :expires,
    started_at_ms = COALESCE(started_at_ms, :now),
    updated_at_ms = :now
"""

_POSTGRES = text(
    f"""
    WITH found AS (
        SELECT id, phase AS from_phase, status AS from_status, agent_id,
            reserved_micros AS held
        FROM runs
        WHERE {_CLAIMABLE}
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE runs SET {_SET}
        FROM found WHERE runs.id = found.id
        RETURNING {_RETURNED}, found.from_phase, found.from_status
    ), released AS (
        UPDATE agents SET reserved_micros = agents.reserved_micros - dead.held
        FROM (
            SELECT agent_id, SUM(held) AS held FROM found WHERE held <> 0 GROUP BY agent_id
        ) AS dead
        WHERE agents.id = dead.agent_id
    ), claim_log AS (
        INSERT INTO run_claims (run_id, claim_epoch, attempt, worker_id, claimed_at_ms)
        SELECT id, claim_epoch, attempt, :worker, :now FROM claimed
    )
    SELECT * FROM claimed ORDER BY id
    """
).columns(*runs.c, *_FOUND_IN)

_SQLITE_FIND = text(
    f"""
    SELECT id, phase AS from_phase, status AS from_status FROM runs
    WHERE {_CLAIMABLE} ORDER BY id LIMIT :limit
    """
)
_SQLITE_CLAIM = (
    text(f"UPDATE runs SET {_SET} WHERE id IN :ids RETURNING {_RETURNED}")
    .bindparams(bindparam("ids", expanding=True))
    .columns(*runs.c)
)
# Before the claim zeroes them: what the runs' dead workers held of their agents' budgets.
_SQLITE_RELEASE = text(
    """
    UPDATE agents SET reserved_micros = reserved_micros - (
        SELECT SUM(runs.reserved_micros) FROM runs
        WHERE runs.agent_id = agents.id AND runs.id IN :ids
    )
    WHERE id IN (SELECT agent_id FROM runs WHERE id IN :ids AND reserved_micros <> 0)
    """
).bindparams(bindparam("ids", expanding=True))
_SQLITE_LOG_CLAIMS = text(
    """
    INSERT INTO run_claims (run_id, claim_epoch, attempt, worker_id, claimed_at_ms)
    SELECT id, claim_epoch, attempt, :worker, :now FROM runs WHERE id IN :ids
    """
).bindparams(bindparam("ids", expanding=True))


def claim_next_runs(
    conn: Connection, dialect: str, worker_id: str, limit: int, now_ms: int, lease_ms: int
) -> list[Row[Any]]:
    """Claim up to ``limit`` runs for ``worker_id``, log the claims and record each
    claim's transition; returns the claimed rows, ordered by id."""
    params = {"worker": worker_id, "limit": limit, "now": now_ms, "expires": now_ms + lease_ms}
    if dialect == "postgresql":
        rows = list(conn.execute(_POSTGRES, params))
        found_in = {r.id: (r.from_phase, r.from_status) for r in rows}
    else:
        found_in = {r.id: (r.from_phase, r.from_status) for r in conn.execute(_SQLITE_FIND, params)}
        if not found_in:
            return []
        claimed = {**params, "ids": list(found_in)}
        conn.execute(_SQLITE_RELEASE, claimed)
        rows = sorted(conn.execute(_SQLITE_CLAIM, claimed), key=lambda r: str(r.id))
        conn.execute(_SQLITE_LOG_CLAIMS, claimed)
    transitions = []
    for r in rows:
        phase, status = found_in[r.id]
        t = claim_transition(
            Phase(phase), RunStatus(status), worker_id=worker_id, attempt=r.attempt, at_ms=now_ms
        )
        transitions.append({"run_id": r.id, **t.to_dict()})
    insert_rows(conn, run_transitions, transitions)
    return rows
