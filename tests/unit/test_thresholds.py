"""threshold.exceeded is decided on crossing: the step that takes a budget from below 80 %
of its limit to at or above it, once per run and budget."""

from __future__ import annotations

import pytest

from runkernel.domain import thresholds
from runkernel.domain.records import RunBudget
from runkernel.domain.skills import Usage
from runkernel.domain.thresholds import AgentHeld, Use, agent_uses, crossings, run_uses


@pytest.mark.parametrize(
    ("before", "after", "crossed"),
    [
        (0, 79, False),  # below before and after
        (79, 80, True),  # exactly at the threshold counts
        (0, 100, True),  # from nothing past the limit in one step
        (80, 90, False),  # already over: no news
        (90, 50, False),  # falling back is not news
        (50, 79, False),
    ],
)
def test_a_budget_is_news_only_when_a_step_crosses_its_threshold(
    before: int, after: int, crossed: bool
) -> None:
    found = crossings([Use("max_cost", before, 100)], [Use("max_cost", after, 100)])
    assert bool(found) is crossed
    if crossed:
        (c,) = found
        assert (c.budget, c.used, c.limit, c.ratio) == ("max_cost", after, 100, after / 100)


def test_a_budget_already_told_is_not_told_again() -> None:
    before, after = [Use("agent_budget", 10, 100)], [Use("agent_budget", 85, 100)]
    assert crossings(before, after, already=frozenset({"agent_budget"})) == []
    assert [c.budget for c in crossings(before, after)] == ["agent_budget"]


def test_run_budgets_without_a_limit_are_never_news() -> None:
    assert run_uses(RunBudget(), 10**9, Usage(10**6, 10**6), 10**3) == []
    uses = run_uses(RunBudget(max_cost_micros=100, max_steps=4), 90, Usage(5, 5), 3)
    assert uses == [Use("max_cost", 90, 100), Use("max_steps", 3, 4)]


def test_run_uses_count_tokens_in_and_out() -> None:
    (use,) = run_uses(RunBudget(max_tokens=10), 0, Usage(3, 5), 0)
    assert (use.budget, use.used) == ("max_tokens", 8)


def test_the_agents_part_of_a_step_is_its_cost() -> None:
    before, after = agent_uses(AgentHeld(held_micros=850, budget_micros=1000), 100)
    assert before == [Use("agent_budget", 750, 1000)]
    assert after == [Use("agent_budget", 850, 1000)]
    assert [c.budget for c in crossings(before, after)] == ["agent_budget"]
    assert agent_uses(None, 100) == ([], [])
    assert agent_uses(AgentHeld(10, 0), 5) == ([], [])  # a zero budget: T0 refuses its runs


def test_the_payload_names_the_run_the_budget_its_ratio_and_limit() -> None:
    (c,) = crossings([Use("max_steps", 3, 5)], [Use("max_steps", 4, 5)])
    assert c.payload("run_1", agent_id="agt_1") == {
        "run_id": "run_1",
        "agent_id": "agt_1",
        "budget": "max_steps",
        "ratio": 0.8,
        "used": 4,
        "limit": 5,
        "threshold": thresholds.THRESHOLD,
    }
