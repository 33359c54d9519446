"""What a step reserves of its budgets before it runs (DESIGN invariant 7).

A step's worst case is one call's worst case times the calls it may make (its retries
and the first try). The run's own budget is checked here, since only the claim's holder
adds to a run's cost; the agent's budget is shared by concurrent runs, so the agent's
share is reserved by one conditional UPDATE in the database, never read then written.

A run holds what it reserved as its *escrow* (``runs.reserved_micros``): the first step
that needs more takes a slice for every step left (:func:`escrow`), the steps draw their
costs from it, and what is left goes back when the run is final, pauses, or is taken over.
A slice is taken only while the budgets have room for :data:`ESCROW_HEADROOM` more
slices like it; when they run low, runs reserve step by step. What a run's escrow holds
unused counts as held for the others, as an in-flight step's worst case always has.
So the agent's and the tenant's rows — shared by every concurrent run — are written about
once per run rather than twice per step while budget is plentiful, and a run is still
refused only when what its step needs does not fit beside what runs in flight hold (the
slice is tried first, then just the step).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum


class OnBudget(StrEnum):
    """What a step does when its reservation does not fit the run's, the agent's or the
    tenant's month's budget."""

    TERMINATE = "terminate"  # the run ends failed_policy / budget_exceeded
    PAUSE = "pause"  # the run pauses at the step (BUDGET_WARNING); resumed, it reserves again
    CAP = "cap"  # a skill that can be lowered runs within what is left, else terminate


def worst_case(per_call_micros: int, retries: int) -> int:
    return per_call_micros * (retries + 1)


def per_call(estimated: int | None, declared: int | None, default: int) -> int:
    """The skill's own estimate (from the rendered params), else the step's declared
    ``estimated_cost_usd``, else the configured default."""
    if estimated is not None:
        return estimated
    return declared if declared is not None else default


# A slice is taken only if this many more like it would still fit after it.
ESCROW_HEADROOM = 8


def escrow(need: int, steps_left: int, max_cost_micros: int | None, cost_micros: int) -> int:
    """What a run takes of its budgets when its escrow does not cover a step that may cost
    ``need``: that much for each step left (its own ``max_cost`` permitting), so the steps
    after it usually draw on the run's own row and the shared rows are written once."""
    want = need * max(steps_left, 1)
    if max_cost_micros is not None:
        want = min(want, max_cost_micros - cost_micros)
    return max(want, need)


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


def cap_refusal(refusal: str, capped_to: int | None, min_tokens: int) -> str:
    """Why a capped step could not run even lowered (to ``capped_to`` tokens, or None when
    its skill cannot be lowered)."""
    if capped_to is None:
        return f"{refusal}; the skill cannot be lowered to fit (on_budget cap)"
    return (
        f"{refusal}; what is left pays for {capped_to} tokens, fewer than the floor of "
        f"{min_tokens} (on_budget cap)"
    )


def left(budget_micros: int, spent_micros: int, reserved_micros: int) -> int:
    return max(0, budget_micros - spent_micros - reserved_micros)


def per_call_share(left_micros: int, retries: int) -> int:
    """What one call of a step may cost when all its calls (retries and the first try)
    together must fit ``left_micros``."""
    return max(0, left_micros) // (retries + 1)


MICROS_PER_MTOK = 1_000_000  # prices are per million tokens


def output_tokens_affordable(
    per_call_micros: int, input_tokens: int, input_price: int, output_price: int
) -> int:
    """The most output tokens one call may be given so that its worst case, priced as
    ``(in * input_price + out * output_price)`` per million tokens rounded half up, is at
    most ``per_call_micros``; 0 when not even the input fits."""
    # round_half_up(x / M) <= c  <=>  x + M // 2 < (c + 1) * M
    room = (per_call_micros + 1) * MICROS_PER_MTOK - MICROS_PER_MTOK // 2 - 1
    room -= input_tokens * input_price
    if room < 0 or output_price <= 0:
        return 0
    return room // output_price


def month_of(now_ms: int) -> str:
    """The UTC calendar month a reservation made at ``now_ms`` is held in: ``"2026-12"``."""
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y-%m")


def tenant_refusal(reservation: int) -> str:
    return (
        f"the step may cost up to {reservation} micros, more than is left of the tenant's "
        "monthly cost cap once this month's spend and reservations are counted"
    )
