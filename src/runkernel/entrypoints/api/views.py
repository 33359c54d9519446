"""Records of the kernel rendered as response bodies (times as ISO 8601 UTC, money in USD)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from runkernel.domain.midrun import PolicyCheckResult
from runkernel.domain.money import micros_to_usd
from runkernel.domain.records import Agent, Run, StepRecord
from runkernel.domain.risk import RiskLevel
from runkernel.domain.runs import RunStatus, Transition
from runkernel.domain.skills import Usage
from runkernel.entrypoints.api import schemas


def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else iso(ms)


def agent(record: Agent) -> schemas.AgentOut:
    return schemas.AgentOut(
        id=record.id,
        name=record.name,
        budget_usd=micros_to_usd(record.budget_micros),
        spent_usd=micros_to_usd(record.spent_micros),
        reserved_usd=micros_to_usd(record.reserved_micros),
        on_budget=record.on_budget.value,
        max_concurrent_runs=record.max_concurrent_runs,
        created_at=iso(record.created_at_ms),
    )


def accepted(run: Run) -> schemas.RunAccepted:
    return schemas.RunAccepted(id=run.id, status=run.status, phase=run.phase)


def _usage(usage: Usage) -> schemas.UsageOut:
    return schemas.UsageOut(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


def _error(run: Run) -> schemas.ErrorDetail | None:
    if run.error_code is None:
        return None
    return schemas.ErrorDetail(code=run.error_code, message=run.error_message or "")


def summary(run: Run) -> schemas.RunSummary:
    return schemas.RunSummary(
        id=run.id,
        agent_id=run.agent_id,
        status=run.status,
        phase=run.phase,
        attempt=run.attempt,
        cost_usd=micros_to_usd(run.cost_micros),
        usage=_usage(run.usage),
        error=_error(run),
        created_at=iso(run.created_at_ms),
        started_at=iso_or_none(run.started_at_ms),
        finished_at=iso_or_none(run.finished_at_ms),
        waiting_for_worker=(
            run.status is RunStatus.PAUSED and run.resume_requested_at_ms is not None
        ),
        resume_requested_at=iso_or_none(run.resume_requested_at_ms),
    )


def detail(run: Run, checks: Sequence[PolicyCheckResult] = ()) -> schemas.RunDetail:
    budget = run.budget
    return schemas.RunDetail(
        **summary(run).model_dump(),
        cost_micros=run.cost_micros,
        budget=schemas.BudgetOut(
            max_cost_usd=(
                None if budget.max_cost_micros is None else micros_to_usd(budget.max_cost_micros)
            ),
            max_tokens=budget.max_tokens,
            max_steps=budget.max_steps,
            timeout_s=budget.timeout_s,
        ),
        plan=run.plan,
        output=run.output,
        metadata=run.metadata,
        idempotency_key=run.idempotency_key,
        submitted_by_key_id=run.submitted_key_id,
        cancel_requested=run.cancel_requested,
        pause_requested=run.pause_requested,
        observability_status=run.observability_status,
        risk_level=RiskLevel(run.risk_level),
        updated_at=iso(run.updated_at_ms),
        transitions=[_transition(t) for t in run.transitions],
        steps=[_step(s) for s in run.steps],
        policy_checks=[_check(c) for c in checks],
    )


def _check(check: PolicyCheckResult) -> schemas.PolicyCheckOut:
    return schemas.PolicyCheckOut(
        step_index=check.step_index,
        decision=check.decision.value,
        reason=check.reason,
        violations=[
            schemas.PolicyViolationOut(type=f.type.value, message=f.message)
            for f in check.violations
        ],
        checked_at=iso(check.checked_at_ms),
        duration_ms=check.duration_ms,
    )


def _transition(t: Transition) -> schemas.TransitionOut:
    return schemas.TransitionOut(
        from_phase=t.from_phase,
        from_status=t.from_status,
        to_phase=t.to_phase,
        to_status=t.to_status,
        at=iso(t.at_ms),
        reason=t.reason,
    )


def _step(step: StepRecord) -> schemas.StepOut:
    return schemas.StepOut(
        step_id=step.step_id,
        skill=step.skill,
        status=step.status,
        output=step.output,
        usage=_usage(step.usage),
        cost_usd=micros_to_usd(step.cost_micros),
        attempt=step.attempt,
        tries=step.tries,
        error=step.error,
        duration_ms=step.duration_ms,
    )
