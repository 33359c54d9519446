"""The facts of a finished run that governance decisions read, and how close it came to its budget.

Incidents, policy evaluation, lessons and risk all decide from a :class:`RunOutcome`, never
from a :class:`~runkernel.domain.records.Run` directly, so each decision is a pure function
of a small frozen value and the completion transaction builds that value once.

Budget usage is one function (:func:`budget_ratios`) shared by lessons and risk, so "85 %
of budget" means the same thing in both. A ratio is ``used / limit`` per limited dimension;
a limit of 0 counts as reached (ratio 1.0) when nothing was used and as infinitely over
when anything was, matching the executor, which stops a run once ``used >= limit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from runkernel.domain.records import Run, RunBudget
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import Usage
from runkernel.errors import InvariantError

NewId = Callable[[str], str]
"""Makes an id from a prefix, like :func:`runkernel.domain.ids.new_id`; injected so that
decisions stay pure and tests choose the ids."""

# Statuses a run can end in. RETRY is in the FAILED phase but means "will run again", so a
# decision on it would be premature.
FINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.FAILED_POLICY, RunStatus.CANCELLED}
)


class Dimension(StrEnum):
    """A budget dimension, in the executor's order of checking."""

    COST = "cost"
    TOKENS = "tokens"
    STEPS = "steps"
    DURATION = "duration"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    tenant_id: str
    agent_id: str
    status: RunStatus
    error_code: str | None
    error_message: str | None
    cost_micros: int
    usage: Usage
    steps_total: int
    steps_done: int
    failed_steps: tuple[str, ...]
    skills: tuple[str, ...]
    budget: RunBudget
    started_at_ms: int | None
    finished_at_ms: int | None

    @property
    def duration_ms(self) -> int | None:
        """Wall time from first claim to the end; None for a run that never started."""
        if self.started_at_ms is None or self.finished_at_ms is None:
            return None
        return max(0, self.finished_at_ms - self.started_at_ms)

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.SUCCEEDED


def from_run(run: Run) -> RunOutcome:
    """Read the outcome of ``run``: step counts from its step records, skills from its plan."""
    raw_steps = run.plan.get("steps") or []
    skills = _unique(str(s["skill"]) for s in raw_steps if isinstance(s, dict) and "skill" in s)
    # A step is recorded once per index; keep the last record should a store hold more.
    by_index = {record.step_index: record for record in run.steps}
    records = [by_index[i] for i in sorted(by_index)]
    return RunOutcome(
        run_id=run.id,
        tenant_id=run.tenant_id,
        agent_id=run.agent_id,
        status=run.status,
        error_code=run.error_code,
        error_message=run.error_message,
        cost_micros=run.cost_micros,
        usage=run.usage,
        steps_total=len(raw_steps),
        steps_done=len(records),
        failed_steps=_unique(r.step_id for r in records if r.status == "failed"),
        skills=skills,
        budget=run.budget,
        started_at_ms=run.started_at_ms,
        finished_at_ms=run.finished_at_ms,
    )


def require_final(outcome: RunOutcome) -> None:
    """Governance decides once, on a final run; deciding earlier is a caller bug."""
    if outcome.status not in FINAL_STATUSES:
        raise InvariantError(
            f"run {outcome.run_id} is {outcome.status.value}, not final: "
            "governance decisions need a finished run"
        )


def budget_ratios(outcome: RunOutcome) -> dict[Dimension, float]:
    """``used / limit`` for every limited dimension (duration only when it is known)."""
    budget = outcome.budget
    pairs: list[tuple[Dimension, float, float | None]] = [
        (Dimension.COST, outcome.cost_micros, budget.max_cost_micros),
        (Dimension.TOKENS, outcome.usage.total_tokens, budget.max_tokens),
        (Dimension.STEPS, outcome.steps_done, budget.max_steps),
    ]
    duration = outcome.duration_ms
    if duration is not None and budget.timeout_s is not None:
        pairs.append((Dimension.DURATION, duration, budget.timeout_s * 1000))
    return {dim: _ratio(used, limit) for dim, used, limit in pairs if limit is not None}


def peak_ratio(outcome: RunOutcome) -> tuple[Dimension, float] | None:
    """The dimension closest to (or furthest past) its limit; None when nothing is limited.
    Ties go to the earlier dimension in :class:`Dimension` order."""
    ratios = budget_ratios(outcome)
    if not ratios:
        return None
    dim = max(ratios, key=lambda d: (ratios[d], -list(Dimension).index(d)))
    return dim, ratios[dim]


def _ratio(used: float, limit: float) -> float:
    if limit > 0:
        return used / limit
    return 1.0 if used <= 0 else math.inf


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """Distinct items in first-seen order."""
    return tuple(dict.fromkeys(items))
