"""Repositories: SQL for tenants, agents and runs. They take a connection from a unit of
work and never commit, roll back or begin (DESIGN invariant 3)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from runkernel.adapters.db import claims
from runkernel.adapters.db.tables import agents, api_keys, run_steps, run_transitions, runs, tenants
from runkernel.domain.records import (
    Agent,
    Claim,
    Principal,
    Role,
    Run,
    RunBudget,
    StepRecord,
    Tenant,
)
from runkernel.domain.runs import Phase, RunStatus, Transition
from runkernel.domain.skills import Usage
from runkernel.errors import ConflictError, LeaseLostError

NOTIFY_CHANNEL = "runkernel_runs"


class SqlTenantRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, tenant: Tenant) -> None:
        self._conn.execute(
            insert(tenants).values(
                id=tenant.id,
                name=tenant.name,
                status=tenant.status,
                created_at_ms=tenant.created_at_ms,
            )
        )

    def get(self, tenant_id: str) -> Tenant | None:
        row = self._conn.execute(select(tenants).where(tenants.c.id == tenant_id)).first()
        return Tenant(row.id, row.name, row.status, row.created_at_ms) if row else None

    def get_by_name(self, name: str) -> Tenant | None:
        row = self._conn.execute(select(tenants).where(tenants.c.name == name)).first()
        return Tenant(row.id, row.name, row.status, row.created_at_ms) if row else None

    def add_key(
        self, *, key_id: str, tenant_id: str, key_hash: str, prefix: str, role: Role, now_ms: int
    ) -> None:
        self._conn.execute(
            insert(api_keys).values(
                id=key_id,
                tenant_id=tenant_id,
                key_hash=key_hash,
                prefix=prefix,
                role=role.value,
                created_at_ms=now_ms,
            )
        )

    def principal_for(self, key_hash: str) -> tuple[Principal, str] | None:
        """The principal of an unrevoked key and its tenant's status."""
        row = self._conn.execute(
            select(api_keys.c.id, api_keys.c.tenant_id, api_keys.c.role, tenants.c.status)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at_ms.is_(None))
        ).first()
        if row is None:
            return None
        return Principal(row.tenant_id, row.id, Role(row.role)), row.status


class SqlAgentRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, agent: Agent) -> None:
        self._conn.execute(
            insert(agents).values(
                id=agent.id,
                tenant_id=agent.tenant_id,
                name=agent.name,
                budget_micros=agent.budget_micros,
                spent_micros=agent.spent_micros,
                created_at_ms=agent.created_at_ms,
            )
        )

    def get(self, tenant_id: str, agent_id: str) -> Agent | None:
        row = self._conn.execute(
            select(agents).where(agents.c.tenant_id == tenant_id, agents.c.id == agent_id)
        ).first()
        return _agent(row) if row else None

    def get_by_name(self, tenant_id: str, name: str) -> Agent | None:
        row = self._conn.execute(
            select(agents).where(agents.c.tenant_id == tenant_id, agents.c.name == name)
        ).first()
        return _agent(row) if row else None

    def for_tenant(self, tenant_id: str) -> list[Agent]:
        rows = self._conn.execute(
            select(agents).where(agents.c.tenant_id == tenant_id).order_by(agents.c.id)
        )
        return [_agent(r) for r in rows]

    def add_spend(self, agent_id: str, micros: int) -> None:
        self._conn.execute(
            update(agents)
            .where(agents.c.id == agent_id)
            .values(spent_micros=agents.c.spent_micros + micros)
        )


class SqlRunRepository:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect

    # -- submission and reads (always tenant-scoped) --------------------------------
    def add(self, run: Run, transitions: Sequence[Transition]) -> None:
        try:
            self._insert_run(run)
        except IntegrityError as exc:
            raise ConflictError(
                f"idempotency key {run.idempotency_key!r} is already taken",
                code="idempotency_conflict",
            ) from exc
        self.add_transitions(run.id, transitions)

    def _insert_run(self, run: Run) -> None:
        self._conn.execute(
            insert(runs).values(
                id=run.id,
                tenant_id=run.tenant_id,
                agent_id=run.agent_id,
                status=run.status.value,
                phase=run.phase.value,
                plan=run.plan,
                budget=run.budget.to_dict(),
                metadata=run.metadata,
                idempotency_key=run.idempotency_key,
                attempt=run.attempt,
                next_step=0,
                error_code=run.error_code,
                error_message=run.error_message,
                created_at_ms=run.created_at_ms,
                updated_at_ms=run.updated_at_ms,
                finished_at_ms=run.finished_at_ms,
            )
        )

    def add_transitions(self, run_id: str, transitions: Iterable[Transition]) -> None:
        rows = [
            {
                "run_id": run_id,
                "from_phase": t.from_phase.value if t.from_phase else None,
                "from_status": t.from_status.value if t.from_status else None,
                "to_phase": t.to_phase.value,
                "to_status": t.to_status.value,
                "reason": t.reason,
                "at_ms": t.at_ms,
            }
            for t in transitions
        ]
        if rows:
            self._conn.execute(insert(run_transitions), rows)

    def get(self, tenant_id: str, run_id: str, *, details: bool = True) -> Run | None:
        row = self._conn.execute(
            select(runs).where(runs.c.tenant_id == tenant_id, runs.c.id == run_id)
        ).first()
        if row is None:
            return None
        return self._with_details(row) if details else _run(row)

    def get_for_worker(self, run_id: str) -> Run | None:
        """Unscoped read for the worker, which acts on behalf of the run's own tenant."""
        row = self._conn.execute(select(runs).where(runs.c.id == run_id)).first()
        return self._with_details(row) if row else None

    def find_by_idempotency_key(self, tenant_id: str, key: str) -> Run | None:
        row = self._conn.execute(
            select(runs).where(runs.c.tenant_id == tenant_id, runs.c.idempotency_key == key)
        ).first()
        return _run(row) if row else None

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
        return [_run(r) for r in rows]

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self._conn.execute(
            select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.step_index)
        )
        return [_step(r) for r in rows]

    def transitions(self, run_id: str) -> list[Transition]:
        rows = self._conn.execute(
            select(run_transitions)
            .where(run_transitions.c.run_id == run_id)
            .order_by(run_transitions.c.id)
        )
        return [
            Transition(
                Phase(r.from_phase) if r.from_phase else None,
                RunStatus(r.from_status) if r.from_status else None,
                Phase(r.to_phase),
                RunStatus(r.to_status),
                r.at_ms,
                r.reason,
            )
            for r in rows
        ]

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
            .where(runs.c.id == run.id, runs.c.status == "queued", runs.c.attempt == run.attempt)
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

    # -- worker writes: every one fenced by the claim's attempt ---------------------
    def claim(self, worker_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Run]:
        rows = claims.claim_next_runs(self._conn, self._dialect, worker_id, limit, now_ms, lease_ms)
        return [_run(r) for r in rows]

    def renew_lease(self, claim: Claim, now_ms: int, lease_ms: int) -> bool:
        result = self._conn.execute(
            update(runs)
            .where(_fence(claim))
            .values(lease_expires_at_ms=now_ms + lease_ms, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    def release(self, claim: Claim, now_ms: int) -> bool:
        """Give the run back: its lease ends now so any worker may claim it at once."""
        result = self._conn.execute(
            update(runs)
            .where(_fence(claim))
            .values(lease_owner=None, lease_expires_at_ms=now_ms, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    def notify_new_runs(self) -> None:
        """Wake listening workers on PostgreSQL; delivered only if the transaction commits."""
        if self._dialect == "postgresql":
            self._conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    def record_step(self, claim: Claim, step: StepRecord, *, now_ms: int) -> bool:
        """Store a finished step and advance the run past it, or raise ``LeaseLostError``.

        Returns whether a cancel was requested meanwhile, so the worker learns of it
        without another query."""
        cancel_requested = self._fenced_update(
            claim,
            next_step=step.step_index + 1,
            input_tokens=runs.c.input_tokens + step.usage.input_tokens,
            output_tokens=runs.c.output_tokens + step.usage.output_tokens,
            cost_micros=runs.c.cost_micros + step.cost_micros,
            updated_at_ms=now_ms,
        )
        self._conn.execute(
            insert(run_steps).values(
                run_id=step.run_id,
                step_index=step.step_index,
                step_id=step.step_id,
                skill=step.skill,
                status=step.status,
                input=step.input,
                output=step.output,
                input_tokens=step.usage.input_tokens,
                output_tokens=step.usage.output_tokens,
                cost_micros=step.cost_micros,
                duration_ms=step.duration_ms,
                error=step.error,
                attempt=step.attempt,
                tries=step.tries,
                finished_at_ms=step.finished_at_ms,
            )
        )
        return cancel_requested

    def finish(
        self,
        claim: Claim,
        transitions: Sequence[Transition],
        *,
        output: Any = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Write the run's final state and the transitions that led to it, fenced."""
        last = transitions[-1]
        self._fenced_update(
            claim,
            status=last.to_status.value,
            phase=last.to_phase.value,
            output=output,
            error_code=error_code,
            error_message=error_message,
            lease_owner=None,
            lease_expires_at_ms=None,
            updated_at_ms=last.at_ms,
            finished_at_ms=last.at_ms,
        )
        self.add_transitions(claim.run_id, transitions)

    def _fenced_update(self, claim: Claim, **values: Any) -> bool:
        row = self._conn.execute(
            update(runs).where(_fence(claim)).values(**values).returning(runs.c.cancel_requested)
        ).first()
        if row is None:
            raise LeaseLostError(
                f"run {claim.run_id}: lease of attempt {claim.attempt} is no longer held"
            )
        return bool(row.cancel_requested)

    def _with_details(self, row: Row[Any]) -> Run:
        base = _run(row)
        return Run(
            **{
                **{f: getattr(base, f) for f in Run.__dataclass_fields__},
                "steps": tuple(self.steps(base.id)),
                "transitions": tuple(self.transitions(base.id)),
            }
        )


def _fence(claim: Claim) -> Any:
    return and_(
        runs.c.id == claim.run_id,
        runs.c.attempt == claim.attempt,
        runs.c.lease_owner == claim.worker_id,
        runs.c.status == "running",
    )


def _agent(row: Row[Any]) -> Agent:
    return Agent(
        row.id, row.tenant_id, row.name, row.budget_micros, row.spent_micros, row.created_at_ms
    )


def _run(row: Row[Any]) -> Run:
    m = row._mapping
    return Run(
        id=m["id"],
        tenant_id=m["tenant_id"],
        agent_id=m["agent_id"],
        status=RunStatus(m["status"]),
        phase=Phase(m["phase"]),
        plan=m["plan"],
        budget=RunBudget.from_dict(m["budget"]),
        metadata=m["metadata"] or {},
        idempotency_key=m["idempotency_key"],
        attempt=m["attempt"],
        lease_owner=m["lease_owner"],
        lease_expires_at_ms=m["lease_expires_at_ms"],
        next_step=m["next_step"],
        usage=Usage(m["input_tokens"], m["output_tokens"]),
        cost_micros=m["cost_micros"],
        error_code=m["error_code"],
        error_message=m["error_message"],
        output=m["output"],
        observability_status=m["observability_status"],
        risk_level=m["risk_level"],
        cancel_requested=bool(m["cancel_requested"]),
        created_at_ms=m["created_at_ms"],
        updated_at_ms=m["updated_at_ms"],
        started_at_ms=m["started_at_ms"],
        finished_at_ms=m["finished_at_ms"],
    )


def _step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        run_id=row.run_id,
        step_index=row.step_index,
        step_id=row.step_id,
        skill=row.skill,
        status=row.status,
        input=row.input,
        output=row.output,
        usage=Usage(row.input_tokens, row.output_tokens),
        cost_micros=row.cost_micros,
        duration_ms=row.duration_ms,
        error=row.error,
        attempt=row.attempt,
        tries=row.tries,
        finished_at_ms=row.finished_at_ms,
    )
