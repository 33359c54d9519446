"""``budget_exceeded``: the run may start another step only while every limit is unmet."""

from __future__ import annotations

import pytest

from runkernel.domain.midrun import budget_exceeded
from runkernel.domain.records import RunBudget
from runkernel.domain.skills import Usage

UNLIMITED = RunBudget()


def test_no_limits_never_stop_a_run() -> None:
    assert budget_exceeded(UNLIMITED, 10**15, Usage(10**9, 10**9), 10**6, 10**12) is None


@pytest.mark.parametrize(
    ("budget", "cost", "usage", "steps", "elapsed_ms", "reason"),
    [
        (RunBudget(max_cost_micros=100), 99, Usage(), 0, 0, None),
        (
            RunBudget(max_cost_micros=100),
            100,
            Usage(),
            0,
            0,
            "cost 100 micros reached the limit of 100",
        ),
        (RunBudget(max_cost_micros=100), 101, Usage(), 0, 0, "cost 101 micros"),
        (RunBudget(max_cost_micros=0), 0, Usage(), 0, 0, "cost 0 micros reached the limit of 0"),
        (RunBudget(max_tokens=10), 0, Usage(4, 5), 0, 0, None),
        (RunBudget(max_tokens=10), 0, Usage(5, 5), 0, 0, "10 tokens reached the limit of 10"),
        (RunBudget(max_tokens=10), 0, Usage(0, 11), 0, 0, "11 tokens"),
        (RunBudget(max_steps=3), 0, Usage(), 2, 0, None),
        (RunBudget(max_steps=3), 0, Usage(), 3, 0, "3 steps reached the limit of 3"),
        (RunBudget(timeout_s=1.5), 0, Usage(), 0, 1_499, None),
        (
            RunBudget(timeout_s=1.5),
            0,
            Usage(),
            0,
            1_500,
            "run time 1500 ms reached the timeout of 1.5 s",
        ),
        # Several limits reached: the first in the order cost, tokens, steps, time is named.
        (RunBudget(1, 1, 1, 1), 5, Usage(5, 5), 5, 5_000, "cost 5 micros"),
        (RunBudget(100, 1, 1, 1), 5, Usage(5, 5), 5, 5_000, "10 tokens"),
        (RunBudget(100, 100, 1, 1), 5, Usage(5, 5), 5, 5_000, "5 steps"),
        (RunBudget(100, 100, 100, 1), 5, Usage(5, 5), 5, 5_000, "run time 5000 ms"),
        (RunBudget(100, 100, 100, 100), 5, Usage(5, 5), 5, 5_000, None),
    ],
)
def test_each_limit_stops_at_its_boundary(
    budget: RunBudget, cost: int, usage: Usage, steps: int, elapsed_ms: int, reason: str | None
) -> None:
    got = budget_exceeded(budget, cost, usage, steps, elapsed_ms)
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason), got


def test_budget_round_trips_through_its_stored_dict() -> None:
    budget = RunBudget(max_cost_micros=5, max_tokens=6, max_steps=7, timeout_s=8.5)
    assert RunBudget.from_dict(budget.to_dict()) == budget
    assert RunBudget.from_dict(None) == UNLIMITED
