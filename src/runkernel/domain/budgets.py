"""What a step reserves of its budgets before it runs (DESIGN invariant 7).

A step's worst case is one call's worst case times the calls it may make (its retries
and the first try). The run's own budget is checked here, since only the claim's holder
adds to a run's cost; the agent's budget is shared by concurrent runs, so the agent's
share is reserved by one conditional UPDATE in the database, never read then written.
"""

from __future__ import annotations


def worst_case(per_call_micros: int, retries: int) -> int:
    return per_call_micros * (retries + 1)


def per_call(estimated: int | None, declared: int | None, default: int) -> int:
    """The skill's own estimate (from the rendered params), else the step's declared
    ``estimated_cost_usd``, else the configured default."""
    if estimated is not None:
        return estimated
    return declared if declared is not None else default


def run_refusal(max_cost_micros: int | None, cost_micros: int, reservation: int) -> str | None:
    """Why the run's own budget cannot take ``reservation`` more, or None."""
    if max_cost_micros is None or cost_micros + reservation <= max_cost_micros:
        return None
    return (
        f"the step may cost up to {reservation} micros; the run has spent {cost_micros} of "
        f"its limit of {max_cost_micros}"
    )


def agent_refusal(reservation: int) -> str:
    return (
        f"the step may cost up to {reservation} micros, more than is left of the agent's "
        "budget once its spend and the reservations of runs in flight are counted"
    )
