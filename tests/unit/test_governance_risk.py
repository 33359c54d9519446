"""Risk level per run from its peak budget ratio, and when a change is a threshold crossing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.records import RunBudget
from runkernel.domain.risk import RiskLevel, crossed, level_of, risk_level
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import Usage

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
    budget=RunBudget(max_cost_micros=100),
    started_at_ms=0,
    finished_at_ms=1_000,
)


@pytest.mark.parametrize(
    ("cost", "level"),
    [
        (0, RiskLevel.NORMAL),
        (84, RiskLevel.NORMAL),
        (85, RiskLevel.NEAR_THRESHOLD),
        (90, RiskLevel.NEAR_THRESHOLD),
        (94, RiskLevel.NEAR_THRESHOLD),
        (95, RiskLevel.AT_RISK),
        (99, RiskLevel.AT_RISK),
        (100, RiskLevel.AT_RISK),  # used its whole budget, did not break it
        (101, RiskLevel.VIOLATED),
        (150, RiskLevel.VIOLATED),
    ],
)
def test_level_bands_by_cost(cost: int, level: RiskLevel) -> None:
    assert risk_level(replace(BASE, cost_micros=cost)) is level


def test_the_peak_dimension_decides() -> None:
    outcome = replace(
        BASE, cost_micros=10, usage=Usage(96, 0), budget=RunBudget(100, max_tokens=100)
    )
    assert risk_level(outcome) is RiskLevel.AT_RISK


def test_a_run_without_limits_is_normal() -> None:
    assert risk_level(replace(BASE, budget=RunBudget(), cost_micros=10**9)) is RiskLevel.NORMAL


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (RunStatus.FAILED_POLICY, "budget_exceeded"),
        (RunStatus.FAILED_POLICY, "agent_budget_exhausted"),
        (RunStatus.FAILED_POLICY, "policy_blocked"),
        (RunStatus.FAILED, "budget_exceeded"),
    ],
)
def test_budget_and_policy_stops_are_violated_whatever_the_ratio(
    status: RunStatus, code: str
) -> None:
    outcome = replace(BASE, status=status, error_code=code, cost_micros=0)
    assert risk_level(outcome) is RiskLevel.VIOLATED


def test_a_plain_failure_is_judged_by_its_ratio() -> None:
    outcome = replace(BASE, status=RunStatus.FAILED, error_code="step_failed", cost_micros=10)
    assert risk_level(outcome) is RiskLevel.NORMAL


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (RiskLevel.NORMAL, RiskLevel.NEAR_THRESHOLD, True),
        (RiskLevel.NORMAL, RiskLevel.VIOLATED, True),
        (RiskLevel.NEAR_THRESHOLD, RiskLevel.AT_RISK, True),
        (RiskLevel.AT_RISK, RiskLevel.VIOLATED, True),
        (RiskLevel.NORMAL, RiskLevel.NORMAL, False),
        (RiskLevel.AT_RISK, RiskLevel.AT_RISK, False),
        (RiskLevel.VIOLATED, RiskLevel.NEAR_THRESHOLD, False),
        (RiskLevel.AT_RISK, RiskLevel.NORMAL, False),
    ],
)
def test_crossed_only_upwards(before: RiskLevel, after: RiskLevel, expected: bool) -> None:
    assert crossed(before, after) is expected


@given(st.floats(min_value=0, max_value=10), st.floats(min_value=0, max_value=10))
def test_a_higher_ratio_never_has_a_lower_level(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert not crossed(level_of(high), level_of(low))
