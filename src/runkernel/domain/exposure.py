"""What a policy rule is judged on: what a run did, or — for a run that has not started —
the most its plan and budget let it do.

A run that never started (judged at submission, T0, or refused or cancelled before a
worker took it) has done nothing, so its plan and budget are all there is to judge: the
skills its steps name, its number of steps (at most its ``max_steps`` budget), and the
cost, tokens and time its budget allows. A dimension the budget leaves unlimited is not
known before the run and is not judged then (``None``); the rule holds again when the run
is judged at completion, on what it did. The evaluation at T0 and the one at completion
are thus the same function, :func:`runkernel.domain.policy.evaluate`, on these facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from runkernel.domain.outcomes import RunOutcome


@dataclass(frozen=True, slots=True)
class Exposure:
    """The facts rules judge; ``planned`` when they are the plan's worst case."""

    planned: bool
    skills: tuple[str, ...]
    steps: int
    cost_micros: int | None
    tokens: int | None
    duration_ms: int | None


def exposure_of(outcome: RunOutcome) -> Exposure:
    if outcome.started_at_ms is None:
        return planned(outcome)
    return Exposure(
        planned=False,
        skills=outcome.skills,
        steps=outcome.steps_done,
        cost_micros=outcome.cost_micros,
        tokens=outcome.usage.total_tokens,
        duration_ms=outcome.duration_ms,
    )


def planned(outcome: RunOutcome) -> Exposure:
    """The most the run may do: its plan's steps (its step budget when lower) and its
    budget's limits."""
    budget = outcome.budget
    steps = outcome.steps_total
    if budget.max_steps is not None:
        steps = min(steps, budget.max_steps)
    timeout_ms = None if budget.timeout_s is None else round(budget.timeout_s * 1000)
    return Exposure(
        planned=True,
        skills=outcome.skills,
        steps=steps,
        cost_micros=budget.max_cost_micros,
        tokens=budget.max_tokens,
        duration_ms=timeout_ms,
    )
