"""SQL for runs, their steps and transitions. It takes the connection of a unit of work
and never commits, rolls back or begins (DESIGN invariant 3).

The worker's hot-path statements are built once at import (with bind parameters) so each
execution reuses SQLAlchemy's compiled form instead of rebuilding and re-keying it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from runkernel.adapters.db import claims, postgres
from runkernel.adapters.db.inserts import insert_rows
from runkernel.adapters.db.rows import run_from_row, step_from_row, transition_from_row
from runkernel.adapters.db.tables import (
    agents,
    run_steps,
    run_transitions,
    runs,
    tenant_spend,
    tenants,
)
from runkernel.domain import budgets
from runkernel.domain.budgets import OnBudget
from runkernel.domain.records import Claim, Requests, Run, StepRecord, StepRecorded
from runkernel.domain.runs import Transition
from runkernel.errors import ConflictError, LeaseLostError

NOTIFY_CHANNEL = "runkernel_runs"

# Every worker write is conditioned on still holding the lease (DESIGN invariant 6).
_FENCE = and_(
    runs.c.id == bindparam("f_run_id"),
    runs.c.claim_epoch == bindparam("f_epoch"),
    runs.c.lease_owner == bindparam("f_worker"),
    runs.c.status == "running",
)
_RECORD_STEP = (
    update(runs)
    .where(_FENCE)
    .values(
        next_step=bindparam("p_next_step"),
        input_tokens=runs.c.input_tokens + bindparam("p_input_tokens"),
        output_tokens=runs.c.output_tokens + bindparam("p_output_tokens"),
        cost_micros=runs.c.cost_micros + bindparam("p_cost"),
        reserved_micros=bindparam("p_left"),
        spend_month=func.coalesce(runs.c.spend_month, bindparam("p_month")),
        updated_at_ms=bindparam("p_now"),
    )
    .returning(
        runs.c.cancel_requested,
        runs.c.pause_requested,
        runs.c.agent_id,
        runs.c.thresholds_crossed,
        runs.c.tenant_id,
        runs.c.spend_month,
    )
)
_RESERVE_RUN = (
    update(runs)
    .where(_FENCE)
    .values(
        reserved_micros=runs.c.reserved_micros + bindparam("p_reserve"),
        spend_month=func.coalesce(runs.c.spend_month, bindparam("p_month")),
    )
    .returning(runs.c.agent_id, runs.c.tenant_id, runs.c.spend_month)
)
# The tenant's month, made on its first reservation; the conditional DO UPDATE is checked
# on the row it writes (both databases), and a first row only if its reservation fits.
# Typed, so PostgreSQL deduces one type for each parameter wherever it is used.
_TENANT, _MONTH = "CAST(:p_tenant AS VARCHAR(64))", "CAST(:p_month AS VARCHAR(7))"
_MICROS, _DELTA = "CAST(:p_reserve AS BIGINT)", "CAST(:p_reserve_delta AS BIGINT)"
_SLACK = "CAST(:p_slack AS BIGINT)"
_CAP = f"(SELECT monthly_cost_micros FROM tenants WHERE id = {_TENANT})"
_RESERVE_TENANT = text(
    f"""
    INSERT INTO tenant_spend (tenant_id, month, spent_micros, reserved_micros)
    SELECT {_TENANT}, {_MONTH}, 0, {_MICROS}
    WHERE {_CAP} IS NULL OR {_MICROS} + {_SLACK} <= {_CAP}
    ON CONFLICT (tenant_id, month) DO UPDATE
        SET reserved_micros = tenant_spend.reserved_micros + {_MICROS}
        WHERE {_CAP} IS NULL OR
            tenant_spend.spent_micros + tenant_spend.reserved_micros + {_MICROS} + {_SLACK}
                <= {_CAP}
    RETURNING tenant_id
    """
)
# What a step's cost differs from its reservation by, held in the run's month.
_SETTLE_TENANT_STEP = text(
    f"""
    INSERT INTO tenant_spend (tenant_id, month, spent_micros, reserved_micros)
    VALUES ({_TENANT}, {_MONTH}, 0, {_DELTA})
    ON CONFLICT (tenant_id, month) DO UPDATE
        SET reserved_micros = tenant_spend.reserved_micros + {_DELTA}
    """
)
# Atomic against every concurrent reservation of the agent: the condition is checked on
# the row the UPDATE writes, never on a value read before (DESIGN invariant 7).
_RESERVE_AGENT = (
    update(agents)
    .where(
        agents.c.id == bindparam("p_agent_id"),
        agents.c.spent_micros
        + agents.c.reserved_micros
        + bindparam("p_reserve")
        + bindparam("p_slack")
        <= agents.c.budget_micros,
    )
    .values(reserved_micros=agents.c.reserved_micros + bindparam("p_reserve"))
)
# The step's reservation becomes its recorded cost, which the agent holds until the run
# is final and pays for it (_SETTLE).
_AGENT_HELD = (agents.c.spent_micros + agents.c.reserved_micros).label("held")
_SETTLE_STEP = (
    update(agents)
    .where(agents.c.id == bindparam("p_agent_id"))
    .values(reserved_micros=agents.c.reserved_micros + bindparam("p_reserve_delta"))
    .returning(_AGENT_HELD, agents.c.budget_micros)
)
_AGENT_POSITION = select(_AGENT_HELD, agents.c.budget_micros).where(
    agents.c.id == bindparam("p_agent_id")
)
_MARK_THRESHOLDS = (
    update(runs)
    .where(_FENCE)
    .values(thresholds_crossed=bindparam("p_crossed", type_=runs.c.thresholds_crossed.type))
)
_FINISH = (
    update(runs)
    .where(_FENCE)
    .values(
        status=bindparam("p_status"),
        phase=bindparam("p_phase"),
        output=bindparam("p_output", type_=runs.c.output.type),
        error_code=bindparam("p_error_code"),
        error_message=bindparam("p_error_message"),
        risk_level=bindparam("p_risk"),
        observability_status=bindparam("p_observability"),
        lease_owner=None,
        lease_expires_at_ms=None,
        updated_at_ms=bindparam("p_now"),
        finished_at_ms=bindparam("p_now"),
    )
    .returning(runs.c.cancel_requested)
)
_RENEW = (
    update(runs)
    .where(_FENCE)
    .values(lease_expires_at_ms=bindparam("p_expires"), updated_at_ms=bindparam("p_now"))
)
_RELEASE = (
    update(runs)
    .where(_FENCE)
    .values(
        lease_owner=None, lease_expires_at_ms=bindparam("p_now"), updated_at_ms=bindparam("p_now")
    )
)
# The agent pays for a run once, when the run is final (DESIGN invariant 1), and lets go
# of what it held for it: the recorded cost and any reservation left.
_THIS_RUN = runs.c.id == bindparam("p_run_id")
_SETTLE = (
    update(agents)
    .where(agents.c.id == select(runs.c.agent_id).where(_THIS_RUN).scalar_subquery())
    .values(
        spent_micros=agents.c.spent_micros
        + select(runs.c.cost_micros).where(_THIS_RUN).scalar_subquery(),
        reserved_micros=agents.c.reserved_micros
        - select(runs.c.cost_micros + runs.c.reserved_micros).where(_THIS_RUN).scalar_subquery(),
    )
)
_SETTLE_TENANT = (
    update(tenant_spend)
    .where(
        tenant_spend.c.tenant_id == select(runs.c.tenant_id).where(_THIS_RUN).scalar_subquery(),
        tenant_spend.c.month == select(runs.c.spend_month).where(_THIS_RUN).scalar_subquery(),
    )
    .values(
        spent_micros=tenant_spend.c.spent_micros
        + select(runs.c.cost_micros).where(_THIS_RUN).scalar_subquery(),
        reserved_micros=tenant_spend.c.reserved_micros
        - select(runs.c.cost_micros + runs.c.reserved_micros).where(_THIS_RUN).scalar_subquery(),
    )
)
_UNRESERVE = update(runs).where(_THIS_RUN, runs.c.reserved_micros != 0).values(reserved_micros=0)
_GOVERNANCE_STATUS = (
    update(runs)
    .where(_THIS_RUN)
    .values(risk_level=bindparam("p_risk"), observability_status=bindparam("p_observability"))
)
_INSERT_STEP = insert(run_steps)
_INSERT_RUN = insert(runs)
_INSERT_TRANSITIONS = insert(run_transitions)


def _fence(claim: Claim) -> dict[str, Any]:
    return {"f_run_id": claim.run_id, "f_epoch": claim.epoch, "f_worker": claim.worker_id}


class SqlRunRepository:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect

    # -- submission and reads (always tenant-scoped) --------------------------------
    def add(self, run: Run, transitions: Sequence[Transition]) -> None:
        try:
            if self._dialect == "postgresql":
                rows = [_transition_values(run.id, t) for t in transitions]
                self._conn.execute(postgres.INSERT_RUN, {**_run_values(run), "p_transitions": rows})
                return
            self._conn.execute(_INSERT_RUN, _run_values(run))
        except IntegrityError as exc:
            raise ConflictError(
                f"idempotency key {run.idempotency_key!r} is already taken",
                code="idempotency_conflict",
            ) from exc
        self.add_transitions(run.id, transitions)

    def add_transitions(self, run_id: str, transitions: Iterable[Transition]) -> None:
        rows = [_transition_values(run_id, t) for t in transitions]
        insert_rows(self._conn, run_transitions, rows)

    def get(self, tenant_id: str, run_id: str, *, details: bool = True) -> Run | None:
        row = self._conn.execute(
            select(runs).where(runs.c.tenant_id == tenant_id, runs.c.id == run_id)
        ).first()
        if row is None:
            return None
        return self._with_details(row) if details else run_from_row(row)

    def get_for_worker(self, run_id: str) -> Run | None:
        """Unscoped read for the worker, which acts on behalf of the run's own tenant."""
        row = self._conn.execute(select(runs).where(runs.c.id == run_id)).first()
        return self._with_details(row) if row else None

    def lock(self, run_id: str) -> None:
        """Hold the run's row until the transaction ends, as a completion's write of it
        does (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes every writer)."""
        self._conn.execute(select(runs.c.id).where(runs.c.id == run_id).with_for_update())

    def find_by_idempotency_key(self, tenant_id: str, key: str) -> Run | None:
        row = self._conn.execute(
            select(runs).where(runs.c.tenant_id == tenant_id, runs.c.idempotency_key == key)
        ).first()
        return run_from_row(row) if row else None

    def search(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Run]:
        query = select(runs).where(runs.c.tenant_id == tenant_id)
        if status:
            query = query.where(runs.c.status == status)
        if agent_id:
            query = query.where(runs.c.agent_id == agent_id)
        if before_id:
            query = query.where(runs.c.id < before_id)
        rows = self._conn.execute(query.order_by(runs.c.id.desc()).limit(limit))
        return [run_from_row(r) for r in rows]

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self._conn.execute(
            select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.step_index)
        )
        return [step_from_row(r) for r in rows]

    def transitions(self, run_id: str) -> list[Transition]:
        rows = self._conn.execute(
            select(run_transitions)
            .where(run_transitions.c.run_id == run_id)
            .order_by(run_transitions.c.id)
        )
        return [transition_from_row(r) for r in rows]

    def request_cancel(self, tenant_id: str, run_id: str, now_ms: int) -> bool:
        result = self._conn.execute(
            update(runs)
            .where(
                runs.c.tenant_id == tenant_id,
                runs.c.id == run_id,
                runs.c.status.in_(["running", "paused"]),
            )
            .values(cancel_requested=True, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    def cancel_queued(self, run: Run, transition: Transition) -> bool:
        """Cancel a run no worker holds; False if it was claimed meanwhile."""
        result = self._conn.execute(
            update(runs)
            .where(
                runs.c.id == run.id,
                runs.c.status == "queued",
                runs.c.claim_epoch == run.claim_epoch,
            )
            .values(
                status=transition.to_status.value,
                phase=transition.to_phase.value,
                error_code="cancelled",
                error_message=transition.reason,
                updated_at_ms=transition.at_ms,
                finished_at_ms=transition.at_ms,
            )
        )
        if result.rowcount != 1:
            return False
        self.add_transitions(run.id, [transition])
        return True

    # -- worker writes: every one fenced by the claim's epoch -----------------------
    def claim(self, worker_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Run]:
        rows = claims.claim_next_runs(self._conn, self._dialect, worker_id, limit, now_ms, lease_ms)
        return [run_from_row(r) for r in rows]

    def renew_lease(self, claim: Claim, now_ms: int, lease_ms: int) -> bool:
        params = {**_fence(claim), "p_expires": now_ms + lease_ms, "p_now": now_ms}
        return self._conn.execute(_RENEW, params).rowcount == 1

    def release(self, claim: Claim, now_ms: int) -> bool:
        """Give the run back: its lease ends now so any worker may claim it at once."""
        return self._conn.execute(_RELEASE, {**_fence(claim), "p_now": now_ms}).rowcount == 1

    def notify_new_runs(self) -> None:
        """Wake listening workers on PostgreSQL; delivered only if the transaction commits."""
        if self._dialect == "postgresql":
            self._conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    def reserve(
        self, claim: Claim, micros: int, *, month: str | None = None, slack: int = 0
    ) -> bool:
        """Hold ``micros`` of the run's agent's budget and of its tenant's month (the run's
        first reservation's UTC month, else ``month``, else now's) for the step about to
        run; False if either does not fit with ``slack`` more still left over (the caller
        rolls back: no share may stay). Raises ``LeaseLostError`` if the claim is no
        longer held."""
        month = month or budgets.month_of(time.time_ns() // 1_000_000)
        params = {**_fence(claim), "p_reserve": micros, "p_month": month, "p_slack": slack}
        if self._dialect == "postgresql":  # one statement: run, agent, then tenant month
            row = self._conn.execute(postgres.RESERVE, params).first()
            if row is None:
                raise _lost(claim)
            return bool(row.fits)
        held = self._conn.execute(_RESERVE_RUN, params).first()
        if held is None:
            raise _lost(claim)
        fits = self._conn.execute(_RESERVE_AGENT, {**params, "p_agent_id": held.agent_id})
        if fits.rowcount != 1:
            return False
        tenant = {
            "p_tenant": held.tenant_id,
            "p_month": held.spend_month,
            "p_reserve": micros,
            "p_slack": slack,
        }
        return self._conn.execute(_RESERVE_TENANT, tenant).first() is not None

    def budget_left(self, claim: Claim) -> tuple[OnBudget, int, int | None]:
        """The run's agent's ``on_budget``, what is left of the agent's budget and of its
        tenant's month (None: no cap) once spend and every reservation are counted: a
        guess, which only the conditional :meth:`reserve` may act on."""
        month = func.coalesce(runs.c.spend_month, bindparam("p_month"))
        row = self._conn.execute(
            select(
                agents.c.on_budget,
                agents.c.budget_micros,
                agents.c.spent_micros,
                agents.c.reserved_micros,
                tenants.c.monthly_cost_micros,
                tenant_spend.c.spent_micros.label("month_spent"),
                tenant_spend.c.reserved_micros.label("month_reserved"),
            )
            .select_from(
                runs.join(agents, runs.c.agent_id == agents.c.id)
                .join(tenants, runs.c.tenant_id == tenants.c.id)
                .outerjoin(
                    tenant_spend,
                    and_(
                        tenant_spend.c.tenant_id == runs.c.tenant_id, tenant_spend.c.month == month
                    ),
                )
            )
            .where(runs.c.id == claim.run_id),
            {"p_month": budgets.month_of(time.time_ns() // 1_000_000)},
        ).one()
        left = budgets.left(row.budget_micros, row.spent_micros, row.reserved_micros)
        month_left = None
        if row.monthly_cost_micros is not None:
            month_left = budgets.left(
                row.monthly_cost_micros, row.month_spent or 0, row.month_reserved or 0
            )
        return OnBudget(row.on_budget), left, month_left

    def record_step(
        self, claim: Claim, step: StepRecord, *, now_ms: int, reserved_micros: int = 0
    ) -> StepRecorded:
        """Store a finished step and advance the run past it, or raise ``LeaseLostError``;
        the step's cost is drawn from the run's escrow (``reserved_micros``, what the run
        holds going in, see ``domain.budgets``), whatever it leaves stays held by the run,
        and a cost beyond it is added to the agent's and the month's, in the same
        statement(s).

        Returns whether a cancel or a pause was requested meanwhile, so the worker learns
        of it without another query, and where the agent stands for the threshold check
        (read only when the step cost something: otherwise it moved nothing)."""
        params = {
            "p_next_step": step.step_index + 1,
            "p_input_tokens": step.usage.input_tokens,
            "p_output_tokens": step.usage.output_tokens,
            "p_cost": step.cost_micros,
            "p_now": now_ms,
            "p_month": budgets.month_of(now_ms),
        }
        # The cost is drawn from the run's escrow; only what it did not cover moves the
        # agent's and the tenant's rows.
        delta = max(step.cost_micros - reserved_micros, 0)
        params["p_left"] = max(reserved_micros - step.cost_micros, 0)
        if self._dialect == "postgresql":
            row = self._fenced_row(
                postgres.RECORD_STEP, claim, **params, p_reserve_delta=delta, **_step_values(step)
            )
            held, budget = row.agent_held, row.agent_budget
        else:
            row = self._fenced_row(_RECORD_STEP, claim, **params)
            agent = None
            if delta:
                agent = self._conn.execute(
                    _SETTLE_STEP, {"p_agent_id": row.agent_id, "p_reserve_delta": delta}
                ).first()
            elif step.cost_micros:
                agent = self._conn.execute(_AGENT_POSITION, {"p_agent_id": row.agent_id}).first()
            self._conn.execute(_INSERT_STEP, _step_values(step))
            held, budget = (None, None) if agent is None else (agent.held, agent.budget_micros)
        if delta:  # a cost the reservation did not foresee is held in the run's month
            settle = {"p_tenant": row.tenant_id, "p_month": row.spend_month}
            self._conn.execute(_SETTLE_TENANT_STEP, {**settle, "p_reserve_delta": delta})
        return StepRecorded(
            Requests(cancel=bool(row.cancel_requested), pause=bool(row.pause_requested)),
            agent_held_micros=None if held is None else int(held),
            agent_budget_micros=None if budget is None else int(budget),
            thresholds_crossed=frozenset(row.thresholds_crossed or ()),
        )

    def mark_thresholds(self, claim: Claim, budgets: frozenset[str]) -> None:
        """Remember the budgets whose threshold.exceeded the run has sent (fenced)."""
        self._fenced_count(_MARK_THRESHOLDS, claim, p_crossed=sorted(budgets))

    def finish(
        self,
        claim: Claim,
        transitions: Sequence[Transition],
        *,
        output: Any = None,
        error_code: str | None = None,
        error_message: str | None = None,
        risk_level: str = "NORMAL",
        observability_status: str = "OK",
    ) -> None:
        """Write the run's final state and the transitions that led to it, and settle the
        run's cost against its agent's spend — one transaction, fenced."""
        last = transitions[-1]
        params = {
            "p_status": last.to_status.value,
            "p_phase": last.to_phase.value,
            "p_output": output,
            "p_error_code": error_code,
            "p_error_message": error_message,
            "p_risk": risk_level,
            "p_observability": observability_status,
            "p_now": last.at_ms,
        }
        if self._dialect == "postgresql":
            rows = [_transition_values(claim.run_id, t) for t in transitions]
            self._fenced(postgres.FINISH, claim, **params, p_transitions=rows)
            return
        self._fenced(_FINISH, claim, **params)
        self._conn.execute(_SETTLE, {"p_run_id": claim.run_id})
        self._conn.execute(_SETTLE_TENANT, {"p_run_id": claim.run_id})
        self._conn.execute(_UNRESERVE, {"p_run_id": claim.run_id})
        self.add_transitions(claim.run_id, transitions)

    def set_governance_status(
        self, run_id: str, *, risk_level: str, observability_status: str
    ) -> None:
        """Record the risk level and observability status the completion decided."""
        self._conn.execute(
            _GOVERNANCE_STATUS,
            {"p_run_id": run_id, "p_risk": risk_level, "p_observability": observability_status},
        )

    def _fenced_count(self, statement: Any, claim: Claim, **params: Any) -> None:
        if self._conn.execute(statement, {**_fence(claim), **params}).rowcount != 1:
            raise _lost(claim)

    def _fenced(self, statement: Any, claim: Claim, **params: Any) -> bool:
        return bool(self._fenced_row(statement, claim, **params).cancel_requested)

    def _fenced_row(self, statement: Any, claim: Claim, **params: Any) -> Row[Any]:
        row = self._conn.execute(statement, {**_fence(claim), **params}).first()
        if row is None:
            raise _lost(claim)
        return row

    def _with_details(self, row: Row[Any]) -> Run:
        base = run_from_row(row)
        return replace(
            base, steps=tuple(self.steps(base.id)), transitions=tuple(self.transitions(base.id))
        )


def _lost(claim: Claim) -> LeaseLostError:
    return LeaseLostError(
        f"run {claim.run_id}: lease of claim epoch {claim.epoch} "
        f"(attempt {claim.attempt}) is no longer held"
    )


def _run_values(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "tenant_id": run.tenant_id,
        "agent_id": run.agent_id,
        "status": run.status.value,
        "phase": run.phase.value,
        "plan": run.plan,
        "budget": run.budget.to_dict(),
        "metadata": run.metadata,
        "idempotency_key": run.idempotency_key,
        "request_fingerprint": run.request_fingerprint,
        "submitted_key_id": run.submitted_key_id,
        "attempt": run.attempt,
        "next_step": 0,
        "error_code": run.error_code,
        "error_message": run.error_message,
        "created_at_ms": run.created_at_ms,
        "updated_at_ms": run.updated_at_ms,
        "finished_at_ms": run.finished_at_ms,
    }


def _transition_values(run_id: str, t: Transition) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "from_phase": t.from_phase.value if t.from_phase else None,
        "from_status": t.from_status.value if t.from_status else None,
        "to_phase": t.to_phase.value,
        "to_status": t.to_status.value,
        "reason": t.reason,
        "at_ms": t.at_ms,
    }


def _step_values(step: StepRecord) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "step_index": step.step_index,
        "step_id": step.step_id,
        "skill": step.skill,
        "status": step.status,
        "input": step.input,
        "output": step.output,
        "input_tokens": step.usage.input_tokens,
        "output_tokens": step.usage.output_tokens,
        "cost_micros": step.cost_micros,
        "duration_ms": step.duration_ms,
        "error": step.error,
        "attempt": step.attempt,
        "tries": step.tries,
        "finished_at_ms": step.finished_at_ms,
    }
