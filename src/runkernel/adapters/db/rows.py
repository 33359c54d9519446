"""Turning result rows into domain records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from runkernel.domain.budgets import OnBudget
from runkernel.domain.records import Agent, Run, RunBudget, StepRecord
from runkernel.domain.runs import Phase, RunStatus, Transition
from runkernel.domain.skills import Usage


def agent_from_row(row: Row[Any]) -> Agent:
    return Agent(
        row.id,
        row.tenant_id,
        row.name,
        row.budget_micros,
        row.spent_micros,
        row.created_at_ms,
        row.reserved_micros,
        OnBudget(row.on_budget),
        row.max_concurrent_runs,
    )


def run_from_row(row: Row[Any]) -> Run:
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
        request_fingerprint=m["request_fingerprint"],
        claim_epoch=m["claim_epoch"],
        submitted_key_id=m["submitted_key_id"],
        pause_requested=bool(m["pause_requested"]),
        resume_requested_at_ms=m["resume_requested_at_ms"],
    )


def step_from_row(row: Row[Any]) -> StepRecord:
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


def transition_from_row(r: Row[Any]) -> Transition:
    return Transition(
        Phase(r.from_phase) if r.from_phase else None,
        RunStatus(r.from_status) if r.from_status else None,
        Phase(r.to_phase),
        RunStatus(r.to_status),
        r.at_ms,
        r.reason,
    )
