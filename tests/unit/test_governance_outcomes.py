"""``RunOutcome``: what a finished run tells governance, and its budget usage ratios."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from runkernel.domain.outcomes import (
    Dimension,
    RunOutcome,
    budget_ratios,
    from_run,
    peak_ratio,
    require_final,
)
from runkernel.domain.records import Run, RunBudget, StepRecord
from runkernel.domain.runs import Phase, RunStatus
from runkernel.domain.skills import Usage
from runkernel.errors import InvariantError

BASE = RunOutcome(
    run_id="run_1",
    tenant_id="ten_1",
    agent_id="agt_1",
    status=RunStatus.SUCCEEDED,
    error_code=None,
    error_message=None,
    cost_micros=0,
    usage=Usage(),
    steps_total=1,
    steps_done=1,
    failed_steps=(),
    skills=("echo",),
    budget=RunBudget(),
    started_at_ms=1_000,
    finished_at_ms=3_000,
)


def _step(index: int, step_id: str, skill: str, status: str) -> StepRecord:
    return StepRecord(
        "run_1", index, step_id, skill, status, None, None, Usage(1, 1), 5, 10, None, 1, 1, 0
    )


def _run(**overrides: object) -> Run:
    run = Run(
        id="run_1",
        tenant_id="ten_1",
        agent_id="agt_1",
        status=RunStatus.FAILED,
        phase=Phase.FAILED,
        plan={
            "steps": [
                {"step_id": "a", "skill": "llm"},
                {"step_id": "b", "skill": "http"},
                {"step_id": "c", "skill": "llm"},
                {"step_id": "d", "skill": "transform"},
            ]
        },
        budget=RunBudget(max_cost_micros=100),
        metadata={},
        idempotency_key=None,
        attempt=1,
        lease_owner=None,
        lease_expires_at_ms=None,
        next_step=3,
        usage=Usage(3, 4),
        cost_micros=15,
        error_code="step_failed",
        error_message="step 'c' failed",
        output=None,
        observability_status="OK",
        risk_level="NORMAL",
        cancel_requested=False,
        created_at_ms=0,
        updated_at_ms=0,
        started_at_ms=100,
        finished_at_ms=700,
        steps=(
            _step(0, "a", "llm", "succeeded"),
            _step(1, "b", "http", "failed"),
            _step(2, "c", "llm", "failed"),
        ),
    )
    return replace(run, **overrides)  # type: ignore[arg-type]


def test_from_run_reads_counts_failed_steps_and_plan_skills() -> None:
    got = from_run(_run())
    assert got == RunOutcome(
        run_id="run_1",
        tenant_id="ten_1",
        agent_id="agt_1",
        status=RunStatus.FAILED,
        error_code="step_failed",
        error_message="step 'c' failed",
        cost_micros=15,
        usage=Usage(3, 4),
        steps_total=4,
        steps_done=3,
        failed_steps=("b", "c"),
        skills=("llm", "http", "transform"),  # distinct, in plan order
        budget=RunBudget(max_cost_micros=100),
        started_at_ms=100,
        finished_at_ms=700,
    )
    assert got.duration_ms == 600


def test_from_run_counts_a_step_recorded_twice_once() -> None:
    run = _run(steps=(_step(0, "a", "llm", "failed"), _step(0, "a", "llm", "succeeded")))
    got = from_run(run)
    assert (got.steps_done, got.failed_steps) == (1, ())


def test_from_run_of_a_denied_run_has_no_duration() -> None:
    got = from_run(_run(steps=(), started_at_ms=None, plan={}))
    assert (got.steps_total, got.steps_done, got.skills, got.duration_ms) == (0, 0, (), None)


@pytest.mark.parametrize(
    "status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.RETRY]
)
def test_decisions_refuse_a_run_that_is_not_final(status: RunStatus) -> None:
    with pytest.raises(InvariantError, match="not final"):
        require_final(replace(BASE, status=status))


def test_ratios_cover_only_limited_dimensions() -> None:
    assert budget_ratios(BASE) == {}
    assert peak_ratio(BASE) is None
    outcome = replace(
        BASE,
        cost_micros=50,
        usage=Usage(30, 30),
        steps_done=1,
        budget=RunBudget(max_cost_micros=200, max_tokens=100, max_steps=4, timeout_s=4.0),
    )
    assert budget_ratios(outcome) == {
        Dimension.COST: 0.25,
        Dimension.TOKENS: 0.6,
        Dimension.STEPS: 0.25,
        Dimension.DURATION: 0.5,  # 2000 ms of 4 s
    }
    assert peak_ratio(outcome) == (Dimension.TOKENS, 0.6)


def test_duration_is_skipped_when_unknown() -> None:
    outcome = replace(BASE, started_at_ms=None, budget=RunBudget(timeout_s=1.0))
    assert budget_ratios(outcome) == {}


def test_a_zero_limit_is_reached_at_zero_and_infinitely_over_beyond() -> None:
    assert budget_ratios(replace(BASE, budget=RunBudget(max_cost_micros=0))) == {
        Dimension.COST: 1.0
    }
    over = replace(BASE, cost_micros=1, budget=RunBudget(max_cost_micros=0))
    assert budget_ratios(over)[Dimension.COST] == math.inf


def test_peak_ties_go_to_the_earlier_dimension() -> None:
    outcome = replace(
        BASE, cost_micros=9, steps_done=9, budget=RunBudget(max_cost_micros=10, max_steps=10)
    )
    assert peak_ratio(outcome) == (Dimension.COST, 0.9)
