"""Lessons a tenant can learn from finished runs, and their review lifecycle.

A finished run yields at most one lesson (the list leaves room for more kinds):

- a failed run (failed or failed_policy, denials included) → ``failure``, once per agent,
  error code and UTC day;
- a succeeded run whose peak budget ratio is in [0.85, 1.0] → ``near_threshold`` in band
  85-90, 90-95 or 95-100 (lower edge inclusive, 1.0 in the top band), once per agent,
  band and UTC day;
- a succeeded run using < 30 % of every limited dimension, with at least one limit set
  (without one there is no budget to be far under), and fast → ``critical_success``, once
  per agent and UTC day. Fast is < 30 % of ``timeout_s`` — already implied by the duration
  dimension — or, with no timeout, under 10 s.

Cancelled runs teach nothing (the tenant chose to stop them). The day is taken from
``now_ms`` — when the lesson is derived — so the dedupe key (unique per tenant in the
database) is what limits "once per day", not a read-then-write.

Proposed rules are WARN rules scoped to the agent, so adopting a draft never starts
failing runs: near-threshold proposes a limit at the level this run used (future runs
above it warn); a budget failure proposes the run's own limit as a standing agent rule;
other lessons propose none, and converting them is a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from runkernel.domain.outcomes import (
    Dimension,
    NewId,
    RunOutcome,
    budget_ratios,
    peak_ratio,
    require_final,
)
from runkernel.domain.policy import Enforcement, RuleKind, Scope, validate_rule_params
from runkernel.domain.risk import NEAR_THRESHOLD
from runkernel.domain.runs import RunStatus
from runkernel.errors import ConflictError

CRITICAL_RATIO = 0.3
FAST_WITHOUT_TIMEOUT_MS = 10_000
BANDS = ((0.95, "95-100"), (0.90, "90-95"), (NEAR_THRESHOLD, "85-90"))  # highest first


class LessonKind(StrEnum):
    FAILURE = "failure"
    NEAR_THRESHOLD = "near_threshold"
    CRITICAL_SUCCESS = "critical_success"


class LessonState(StrEnum):
    PENDING = "pending"
    CONVERTED_TO_DRAFT = "converted_to_draft"
    DEFERRED = "deferred"
    DISMISSED = "dismissed"


_NEXT: dict[LessonState, frozenset[LessonState]] = {
    LessonState.PENDING: frozenset(
        {LessonState.CONVERTED_TO_DRAFT, LessonState.DEFERRED, LessonState.DISMISSED}
    ),
    LessonState.DEFERRED: frozenset(
        {LessonState.PENDING, LessonState.CONVERTED_TO_DRAFT, LessonState.DISMISSED}
    ),
}


@dataclass(frozen=True, slots=True)
class Lesson:
    """One row of ``lessons``."""

    id: str
    tenant_id: str
    agent_id: str
    run_id: str
    kind: LessonKind
    dedupe_key: str
    state: LessonState
    title: str
    detail: dict[str, Any]
    proposed_rule: dict[str, Any] | None
    created_at_ms: int
    updated_at_ms: int


def utc_day(now_ms: int) -> str:
    """``yyyy-mm-dd`` of ``now_ms`` in UTC (integer arithmetic: no float rounding at midnight)."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=now_ms)).strftime("%Y-%m-%d")


def band_of(ratio: float) -> str | None:
    """The near-threshold band of a budget ratio, or None outside [0.85, 1.0]."""
    if ratio > 1.0:
        return None
    return next((name for low, name in BANDS if ratio >= low), None)


@dataclass(frozen=True, slots=True)
class _Finding:
    kind: LessonKind
    key: str  # the dedupe key without its day
    title: str
    detail: dict[str, Any]
    rule: dict[str, Any] | None = None


def derive_lessons(outcome: RunOutcome, *, now_ms: int, new_id: NewId) -> list[Lesson]:
    """The lessons a finished run teaches (see the module doc)."""
    require_final(outcome)
    if outcome.status is RunStatus.CANCELLED:
        return []
    if outcome.succeeded:
        found = _near_threshold(outcome) or _critical_success(outcome)
    else:
        found = _failure(outcome)
    if found is None:
        return []
    lesson = Lesson(
        id=new_id("lsn"),
        tenant_id=outcome.tenant_id,
        agent_id=outcome.agent_id,
        run_id=outcome.run_id,
        kind=found.kind,
        dedupe_key=f"{found.key}:{utc_day(now_ms)}",
        state=LessonState.PENDING,
        title=found.title,
        detail=found.detail,
        proposed_rule=found.rule,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )
    return [lesson]


def _failure(outcome: RunOutcome) -> _Finding:
    agent, code = outcome.agent_id, outcome.error_code or "unknown"
    detail = {
        "status": outcome.status.value,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "failed_steps": list(outcome.failed_steps),
    }
    title = f"Agent {agent} runs fail with {code}"
    return _Finding(
        LessonKind.FAILURE, f"failure:{agent}:{code}", title, detail, _budget_failure_rule(outcome)
    )


def _near_threshold(outcome: RunOutcome) -> _Finding | None:
    peak = peak_ratio(outcome)
    band = None if peak is None else band_of(peak[1])
    if peak is None or band is None:
        return None
    (dim, ratio), agent = peak, outcome.agent_id
    detail = {"band": band, "dimension": dim.value, "ratio": round(ratio, 4)}
    title = f"Agent {agent} used {ratio:.0%} of its {dim.value} budget"
    rule = _proposal(outcome, dim, _observed(outcome, dim))
    return _Finding(LessonKind.NEAR_THRESHOLD, f"near:{agent}:{band}", title, detail, rule)


def _critical_success(outcome: RunOutcome) -> _Finding | None:
    ratios = budget_ratios(outcome)
    if not ratios or any(r >= CRITICAL_RATIO for r in ratios.values()):
        return None
    duration = outcome.duration_ms
    if outcome.budget.timeout_s is None:
        fast = duration is not None and duration < FAST_WITHOUT_TIMEOUT_MS
    else:
        fast = Dimension.DURATION in ratios  # and its ratio is < 30 %, checked above
    if not fast:
        return None
    detail = {"ratios": {d.value: round(r, 4) for d, r in ratios.items()}, "duration_ms": duration}
    title = f"Agent {outcome.agent_id} succeeded well within budget"
    return _Finding(LessonKind.CRITICAL_SUCCESS, f"critical:{outcome.agent_id}", title, detail)


def move(lesson: Lesson, to: LessonState, now_ms: int) -> Lesson:
    """Change state: pending → converted_to_draft | deferred | dismissed; deferred →
    pending | converted_to_draft | dismissed; the rest are final (``ConflictError``)."""
    if to not in _NEXT.get(lesson.state, frozenset()):
        raise ConflictError(
            f"lesson {lesson.id} is {lesson.state.value}; it cannot become {to.value}",
            code="illegal_lesson_transition",
        )
    return replace(lesson, state=to, updated_at_ms=now_ms)


def defer(lesson: Lesson, now_ms: int) -> Lesson:
    return move(lesson, LessonState.DEFERRED, now_ms)


def dismiss(lesson: Lesson, now_ms: int) -> Lesson:
    return move(lesson, LessonState.DISMISSED, now_ms)


def reopen(lesson: Lesson, now_ms: int) -> Lesson:
    return move(lesson, LessonState.PENDING, now_ms)


def convert(lesson: Lesson, now_ms: int) -> tuple[Lesson, dict[str, Any]]:
    """Mark the lesson converted and hand out its proposed rule as a draft
    (``kind``, ``params``, ``enforcement``, ``scope``, ``agent_id``: ready for ``new_rule``)."""
    if lesson.proposed_rule is None:
        raise ConflictError(
            f"lesson {lesson.id} ({lesson.kind.value}) proposes no rule; defer or dismiss it",
            code="lesson_without_rule",
        )
    moved = move(lesson, LessonState.CONVERTED_TO_DRAFT, now_ms)
    return moved, {**lesson.proposed_rule, "params": dict(lesson.proposed_rule["params"])}


def _budget_failure_rule(outcome: RunOutcome) -> dict[str, Any] | None:
    peak = peak_ratio(outcome)
    if outcome.error_code != "budget_exceeded" or peak is None:
        return None
    limits: dict[Dimension, float | None] = {
        Dimension.COST: outcome.budget.max_cost_micros,
        Dimension.TOKENS: outcome.budget.max_tokens,
        Dimension.STEPS: outcome.budget.max_steps,
        Dimension.DURATION: outcome.budget.timeout_s,
    }
    limit = limits[peak[0]]
    return None if limit is None else _proposal(outcome, peak[0], limit)


def _observed(outcome: RunOutcome, dim: Dimension) -> float:
    """What the run used of ``dim``, in the unit of that dimension's rule."""
    if dim is Dimension.COST:
        return outcome.cost_micros
    if dim is Dimension.TOKENS:
        return outcome.usage.total_tokens
    if dim is Dimension.STEPS:
        return outcome.steps_done
    return (outcome.duration_ms or 0) / 1000


_RULE_FOR = {
    Dimension.COST: (RuleKind.MAX_COST, "max_cost_micros"),
    Dimension.TOKENS: (RuleKind.MAX_TOKENS, "max_tokens"),
    Dimension.STEPS: (RuleKind.MAX_STEPS, "max_steps"),
    Dimension.DURATION: (RuleKind.MAX_DURATION, "max_duration_s"),
}


def _proposal(outcome: RunOutcome, dim: Dimension, level: float) -> dict[str, Any]:
    kind, key = _RULE_FOR[dim]
    value = float(level) if dim is Dimension.DURATION else int(level)
    return {
        "kind": kind.value,
        # Validated here so a draft is always adoptable as it stands.
        "params": validate_rule_params(kind, {key: value}),
        "enforcement": Enforcement.WARN.value,
        "scope": Scope.AGENT.value,
        "agent_id": outcome.agent_id,
    }
