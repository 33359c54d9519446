"""When a step makes a budget news: ``threshold.exceeded`` on *crossing* a share of it.

A budget is crossed by the step that takes its use from below :data:`THRESHOLD` of its
limit to at or above it — once per run and budget (the names a run was already told of
come in as ``already``, since the agent's budget can fall back under the threshold when
other runs' reservations are released, and cross again). The run's own budgets (cost,
tokens, steps) only grow within a run; the agent's budget is what it has spent plus what
it holds (recorded costs of runs not yet final, reservations of steps in flight), and the
step's part of it is its cost.

Pure: the executor gives positions before and after a step, and writes what this answers
with the step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runkernel.domain.records import RunBudget
from runkernel.domain.skills import Usage

THRESHOLD = 0.8

MAX_COST = "max_cost"
MAX_TOKENS = "max_tokens"
MAX_STEPS = "max_steps"
AGENT_BUDGET = "agent_budget"


@dataclass(frozen=True, slots=True)
class Use:
    """How much of one budget is used, out of ``limit`` (micros, tokens or steps)."""

    budget: str
    used: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.used / self.limit


@dataclass(frozen=True, slots=True)
class Crossing:
    """``budget`` went past the threshold: ``ratio`` is its use after the step."""

    budget: str
    ratio: float
    used: int
    limit: int

    def payload(self, run_id: str, *, agent_id: str) -> dict[str, object]:
        return {
            "run_id": run_id,
            "agent_id": agent_id,
            "budget": self.budget,
            "ratio": round(self.ratio, 4),
            "used": self.used,
            "limit": self.limit,
            "threshold": THRESHOLD,
        }


@dataclass(frozen=True, slots=True)
class AgentHeld:
    """The agent's budget and what it has spent plus holds, after the step settled."""

    held_micros: int
    budget_micros: int


def run_uses(budget: RunBudget, cost_micros: int, usage: Usage, steps: int) -> list[Use]:
    """The run's limited budgets and their use; an unlimited (or zero) one is never news."""
    pairs = (
        (MAX_COST, cost_micros, budget.max_cost_micros),
        (MAX_TOKENS, usage.total_tokens, budget.max_tokens),
        (MAX_STEPS, steps, budget.max_steps),
    )
    return [Use(name, used, limit) for name, used, limit in pairs if limit]


def agent_uses(agent: AgentHeld | None, step_cost_micros: int) -> tuple[list[Use], list[Use]]:
    """The agent's budget before and after the step (before: without the step's cost)."""
    if agent is None or agent.budget_micros <= 0:
        return [], []
    after = agent.held_micros
    return (
        [Use(AGENT_BUDGET, after - step_cost_micros, agent.budget_micros)],
        [Use(AGENT_BUDGET, after, agent.budget_micros)],
    )


def crossings(
    before: Sequence[Use], after: Iterable[Use], *, already: frozenset[str] = frozenset()
) -> list[Crossing]:
    """The budgets this step crossed, not counting those named in ``already``."""
    was = {u.budget: u.ratio for u in before}
    return [
        Crossing(u.budget, u.ratio, u.used, u.limit)
        for u in after
        if u.budget not in already and u.ratio >= THRESHOLD and was.get(u.budget, 0.0) < THRESHOLD
    ]
