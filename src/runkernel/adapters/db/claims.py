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

A queued or resumed run of an agent that already has ``max_concurrent_runs`` running is
not claimable; one claim starts no more of an agent's runs than it has room for, and on
PostgreSQL the agents with a limit and runs waiting are locked first (one more
statement), so concurrent claims of one agent's runs take turns and count each other's.
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

# An agent's max_concurrent_runs: a queued run (or a resumed one) of an agent that already
# has that many running stays where it is, and is claimed once one of them stops. The
# pre-filter keeps a full agent's runs out of the LIMIT; the rank keeps one claim from
# starting more of an agent's runs than it has room for. On PostgreSQL the agents with a
# limit are locked first (_PG_LOCK_LIMITED), so concurrent claims count each other's.
_BUSY = """(SELECT count(*) FROM runs AS busy
    WHERE busy.agent_id = {agent} AND busy.status = 'running')"""
_UNDER_LIMIT = f"""(runs.status = 'running' OR NOT EXISTS (
    SELECT 1 FROM agents AS lim
    WHERE lim.id = runs.agent_id AND lim.max_concurrent_runs IS NOT NULL
        AND lim.max_concurrent_runs <= {_BUSY.format(agent="lim.id")}
))"""
_STARTS_FOUND = f"""
    ranked AS (
        SELECT candidates.*, row_number() OVER (
            PARTITION BY agent_id, from_status = 'running' ORDER BY id
        ) AS rank
        FROM candidates
    ), found AS (
        SELECT ranked.id, ranked.from_phase, ranked.from_status, ranked.agent_id, ranked.held,
            ranked.tenant_id, ranked.spend_month
        FROM ranked JOIN agents ON agents.id = ranked.agent_id
        WHERE ranked.from_status = 'running' OR agents.max_concurrent_runs IS NULL
            OR ranked.rank <= agents.max_concurrent_runs - {_BUSY.format(agent="ranked.agent_id")}
    )
"""
_CANDIDATES = f"""
    SELECT id, phase AS from_phase, status AS from_status, agent_id, reserved_micros AS held,
        tenant_id, spend_month
    FROM runs
    WHERE ({_CLAIMABLE}) AND {_UNDER_LIMIT}
    ORDER BY id LIMIT :limit
"""
# Serializes the claims that may start runs of agents with a limit (NO KEY: a submission's
# foreign key check still passes). Runs of unlimited agents are not held up.
_PG_LOCK_LIMITED = text(
    """
    SELECT agents.id FROM agents
    WHERE agents.max_concurrent_runs IS NOT NULL AND EXISTS (
        SELECT 1 FROM runs
        WHERE runs.agent_id = agents.id
            AND ((runs.status = 'queued' AND runs.phase = 'AUTHORIZED')
                OR (runs.status = 'paused' AND runs.resume_requested_at_ms IS NOT NULL))
    )
    ORDER BY agents.id FOR NO KEY UPDATE OF agents
    """
)

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
    WITH candidates AS ({_CANDIDATES} FOR UPDATE SKIP LOCKED
    ), {_STARTS_FOUND}, claimed AS (
        UPDATE runs SET {_SET}
        FROM found WHERE runs.id = found.id
        RETURNING {_RETURNED}, found.from_phase, found.from_status
    ), released AS (
        UPDATE agents SET reserved_micros = agents.reserved_micros - dead.held
        FROM (
            SELECT agent_id, SUM(held) AS held FROM found WHERE held <> 0 GROUP BY agent_id
        ) AS dead
        WHERE agents.id = dead.agent_id
        RETURNING agents.id
    ), month_released AS (
        UPDATE tenant_spend SET reserved_micros = tenant_spend.reserved_micros - dead.held
        FROM (
            SELECT tenant_id, spend_month, SUM(held) AS held FROM found
            WHERE held <> 0 GROUP BY tenant_id, spend_month
        ) AS dead
        WHERE tenant_spend.tenant_id = dead.tenant_id AND tenant_spend.month = dead.spend_month
            AND (SELECT count(*) FROM released) >= 0  -- after the agents' rows (lock order)
    ), claim_log AS (
        INSERT INTO run_claims (run_id, claim_epoch, attempt, worker_id, claimed_at_ms)
        SELECT id, claim_epoch, attempt, :worker, :now FROM claimed
    )
    SELECT * FROM claimed ORDER BY id
    """
).columns(*runs.c, *_FOUND_IN)

_SQLITE_FIND = text(
    f"""
    WITH candidates AS ({_CANDIDATES}), {_STARTS_FOUND}
    SELECT id, from_phase, from_status FROM found ORDER BY id
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
_SQLITE_RELEASE_MONTH = text(
    """
    UPDATE tenant_spend SET reserved_micros = reserved_micros - (
        SELECT SUM(runs.reserved_micros) FROM runs
        WHERE runs.tenant_id = tenant_spend.tenant_id AND runs.spend_month = tenant_spend.month
            AND runs.id IN :ids
    )
    WHERE EXISTS (
        SELECT 1 FROM runs
        WHERE runs.tenant_id = tenant_spend.tenant_id AND runs.spend_month = tenant_spend.month
            AND runs.id IN :ids AND runs.reserved_micros <> 0
    )
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
        conn.execute(_PG_LOCK_LIMITED)
        rows = list(conn.execute(_POSTGRES, params))
        found_in = {r.id: (r.from_phase, r.from_status) for r in rows}
    else:
        found_in = {r.id: (r.from_phase, r.from_status) for r in conn.execute(_SQLITE_FIND, params)}
        if not found_in:
            return []
        claimed = {**params, "ids": list(found_in)}
        conn.execute(_SQLITE_RELEASE, claimed)
        conn.execute(_SQLITE_RELEASE_MONTH, claimed)
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
