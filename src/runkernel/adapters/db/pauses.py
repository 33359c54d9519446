"""SQL for pauses: the ``run_pauses`` rows, and the run writes that pause and resume.

Pausing is a worker write, fenced by the claim like every other (DESIGN invariant 6): the
run becomes EXECUTING/paused and its lease ends, so no takeover ever claims it. Granting
a resume marks the paused run (``resume_requested_at_ms``); the claim takes such runs
(``adapters/db/claims.py``) and the domain makes that a RESUME claim, which counts no
attempt.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, or_, select, update

from runkernel.adapters.db.inserts import insert_rows
from runkernel.adapters.db.tables import (
    agents,
    run_pauses,
    run_transitions,
    runs,
    tenant_spend,
)
from runkernel.domain.pauses import (
    Pause,
    PauseReason,
    PauseResumeAuthority,
    Refusal,
    ResumeRefusal,
    TimeoutBehaviour,
)
from runkernel.domain.records import Claim
from runkernel.domain.runs import RunStatus, Transition
from runkernel.errors import LeaseLostError

_KEY_FIELDS = ("run_id", "number")


class SqlPauseRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- the pause records ----------------------------------------------------------
    def add(self, pause: Pause, tenant_id: str) -> None:
        self._conn.execute(insert(run_pauses).values(tenant_id=tenant_id, **_values(pause)))

    def save(self, pause: Pause) -> None:
        """Store what changed on a pause: its attempts, refusals, expiry and end."""
        changed = {k: v for k, v in _values(pause).items() if k not in _KEY_FIELDS}
        self._conn.execute(
            update(run_pauses)
            .where(run_pauses.c.run_id == pause.run_id, run_pauses.c.number == pause.number)
            .values(**changed)
        )

    def for_run(self, run_id: str) -> list[Pause]:
        rows = self._conn.execute(
            select(run_pauses).where(run_pauses.c.run_id == run_id).order_by(run_pauses.c.number)
        )
        return [_pause(r) for r in rows]

    def open_for(self, run_id: str) -> Pause | None:
        row = self._conn.execute(
            select(run_pauses).where(
                run_pauses.c.run_id == run_id, run_pauses.c.ended_at_ms.is_(None)
            )
        ).first()
        return None if row is None else _pause(row)

    def expired(self, now_ms: int, *, limit: int = 100) -> list[Pause]:
        """Open pauses whose SLA has run out, oldest expiry first."""
        rows = self._conn.execute(
            select(run_pauses)
            .where(run_pauses.c.ended_at_ms.is_(None), run_pauses.c.expires_at_ms <= now_ms)
            .order_by(run_pauses.c.expires_at_ms, run_pauses.c.run_id)
            .limit(limit)
        )
        return [_pause(r) for r in rows]

    def expiring(self, now_ms: int, notify_before_ms: int, *, limit: int = 100) -> list[Pause]:
        """Open pauses expiring within ``notify_before_ms`` (not yet expired) whose
        current expiry has had no ``run.pause_expiring`` notice, soonest first."""
        p = run_pauses.c
        rows = self._conn.execute(
            select(run_pauses)
            .where(
                p.ended_at_ms.is_(None),
                p.expires_at_ms > now_ms,
                p.expires_at_ms <= now_ms + notify_before_ms,
                or_(
                    p.expiring_notified_for_ms.is_(None),
                    p.expiring_notified_for_ms != p.expires_at_ms,
                ),
            )
            .order_by(p.expires_at_ms, p.run_id)
            .limit(limit)
        )
        return [_pause(r) for r in rows]

    # -- the run's side -------------------------------------------------------------
    def request_pause(self, tenant_id: str, run_id: str, now_ms: int, *, by: str) -> bool:
        """Ask the worker holding a running run to pause it at its next step boundary."""
        result = self._conn.execute(
            update(runs)
            .where(runs.c.tenant_id == tenant_id, runs.c.id == run_id, runs.c.status == "running")
            .values(pause_requested=True, pause_requested_by=by, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    def requested_by(self, run_id: str) -> str | None:
        """Who asked for the run's pause (None: nobody, or it was paused already)."""
        by = self._conn.execute(
            select(runs.c.pause_requested_by).where(runs.c.id == run_id)
        ).scalar()
        return None if by is None else str(by)

    def pause(self, claim: Claim, transition: Transition) -> None:
        """Pause the run this claim holds and end its lease, or raise ``LeaseLostError``.
        The run's escrow goes back to its agent and month: a paused run holds no budget
        others could use (its recorded cost stays held until it is final)."""
        fenced = (
            runs.c.id == claim.run_id,
            runs.c.claim_epoch == claim.epoch,
            runs.c.lease_owner == claim.worker_id,
            runs.c.status == "running",
        )
        held = self._conn.execute(
            select(
                runs.c.agent_id, runs.c.tenant_id, runs.c.spend_month, runs.c.reserved_micros
            ).where(*fenced)
        ).first()
        result = self._conn.execute(
            update(runs)
            .where(*fenced)
            .values(
                status=transition.to_status.value,
                phase=transition.to_phase.value,
                pause_requested=False,
                pause_requested_by=None,
                lease_owner=None,
                lease_expires_at_ms=None,
                reserved_micros=0,
                updated_at_ms=transition.at_ms,
            )
        )
        if held is None or result.rowcount != 1:
            raise LeaseLostError(f"run {claim.run_id}: claim epoch {claim.epoch} is not held")
        if held.reserved_micros:
            self._release(held.agent_id, (held.tenant_id, held.spend_month), held.reserved_micros)
        self._add_transition(claim.run_id, transition)

    def _release(self, agent_id: str, month: tuple[str, str | None], micros: int) -> None:
        """Give ``micros`` the run held back to its agent, then its month (lock order)."""
        tenant_id, spend_month = month
        self._conn.execute(
            update(agents)
            .where(agents.c.id == agent_id)
            .values(reserved_micros=agents.c.reserved_micros - micros)
        )
        self._conn.execute(
            update(tenant_spend)
            .where(
                tenant_spend.c.tenant_id == tenant_id,
                tenant_spend.c.month == spend_month,
            )
            .values(reserved_micros=tenant_spend.c.reserved_micros - micros)
        )

    def request_resume(self, run_id: str, now_ms: int) -> bool:
        """Queue a paused run to be claimed again; False if it is not paused."""
        result = self._conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == RunStatus.PAUSED.value)
            .values(resume_requested_at_ms=now_ms, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    def terminate(self, run_id: str, t: Transition, *, error_code: str) -> bool:
        """End a paused run no worker holds, settling it against its agent as a finish
        does: its cost so far is spent, and what the agent held for it (that cost and any
        reservation left) is released; False if it is no longer paused."""
        held = self._conn.execute(
            select(
                runs.c.agent_id,
                runs.c.tenant_id,
                runs.c.spend_month,
                runs.c.cost_micros,
                runs.c.reserved_micros,
            ).where(runs.c.id == run_id, runs.c.status == RunStatus.PAUSED.value)
        ).first()
        if held is None:
            return False
        result = self._conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == RunStatus.PAUSED.value)
            .values(
                status=t.to_status.value,
                phase=t.to_phase.value,
                error_code=error_code,
                error_message=t.reason,
                resume_requested_at_ms=None,
                reserved_micros=0,
                updated_at_ms=t.at_ms,
                finished_at_ms=t.at_ms,
            )
        )
        if result.rowcount != 1:
            return False
        self._conn.execute(
            update(agents)
            .where(agents.c.id == held.agent_id)
            .values(
                spent_micros=agents.c.spent_micros + held.cost_micros,
                reserved_micros=agents.c.reserved_micros
                - (held.cost_micros + held.reserved_micros),
            )
        )
        self._conn.execute(
            update(tenant_spend)
            .where(
                tenant_spend.c.tenant_id == held.tenant_id,
                tenant_spend.c.month == held.spend_month,
            )
            .values(
                spent_micros=tenant_spend.c.spent_micros + held.cost_micros,
                reserved_micros=tenant_spend.c.reserved_micros
                - (held.cost_micros + held.reserved_micros),
            )
        )
        self._add_transition(run_id, t)
        return True

    def _add_transition(self, run_id: str, t: Transition) -> None:
        insert_rows(self._conn, run_transitions, [{"run_id": run_id, **t.to_dict()}])


def _values(p: Pause) -> dict[str, Any]:
    return {
        "run_id": p.run_id,
        "number": p.number,
        "reason": p.reason.value,
        "message": p.message,
        "violations": list(p.violations),
        "paused_at_ms": p.paused_at_ms,
        "expires_at_ms": p.expires_at_ms,
        "authorities": sorted(a.value for a in p.authorities),
        "on_timeout": p.on_timeout.value,
        "paused_by": p.paused_by,
        "key_owner": p.key_owner,
        "escalations": p.escalations,
        "resume_attempts": p.resume_attempts,
        "last_actor": p.last_actor,
        "refusals": [r.to_dict() for r in p.refusals],
        "ended_at_ms": p.ended_at_ms,
        "ended_by": p.ended_by,
        "outcome": p.outcome,
        "step_index": p.step_index,
        "expiring_notified_for_ms": p.expiring_notified_for_ms,
    }


def _pause(r: Row[Any]) -> Pause:
    return Pause(
        run_id=r.run_id,
        number=r.number,
        reason=PauseReason(r.reason),
        message=r.message,
        violations=tuple(r.violations or ()),
        paused_at_ms=r.paused_at_ms,
        expires_at_ms=r.expires_at_ms,
        authorities=frozenset(PauseResumeAuthority(a) for a in r.authorities),
        on_timeout=TimeoutBehaviour(r.on_timeout),
        paused_by=r.paused_by,
        key_owner=r.key_owner,
        escalations=r.escalations,
        resume_attempts=r.resume_attempts,
        last_actor=r.last_actor,
        refusals=tuple(
            Refusal(x["actor"], x["at_ms"], ResumeRefusal(x["reason"]), x["message"])
            for x in r.refusals or ()
        ),
        ended_at_ms=r.ended_at_ms,
        ended_by=r.ended_by,
        outcome=r.outcome,
        step_index=r.step_index,
        expiring_notified_for_ms=r.expiring_notified_for_ms,
    )
