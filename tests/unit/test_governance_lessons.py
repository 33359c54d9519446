"""Lessons from finished runs: failures, near-threshold bands, critical successes, lifecycle."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.adapters.db import tables
from runkernel.domain.lessons import (
    Lesson,
    LessonKind,
    LessonState,
    band_of,
    convert,
    defer,
    derive_lessons,
    dismiss,
    move,
    reopen,
    utc_day,
)
from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.policy import new_rule
from runkernel.domain.records import RunBudget
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import Usage
from runkernel.errors import ConflictError, InvariantError

DAY_MS = 86_400_000
NOW = 19_723 * DAY_MS + 3_600_000  # 2024-01-01T01:00Z
RUN = RunOutcome(
    run_id="run_1",
    tenant_id="ten_1",
    agent_id="agt_1",
    status=RunStatus.SUCCEEDED,
    error_code=None,
    error_message=None,
    cost_micros=50,
    usage=Usage(),
    steps_total=2,
    steps_done=2,
    failed_steps=(),
    skills=("llm",),
    budget=RunBudget(max_cost_micros=100),
    started_at_ms=0,
    finished_at_ms=1_000,
)


def new_id(prefix: str) -> str:
    return f"{prefix}_fixed"


def derive(now_ms: int = NOW, **overrides: Any) -> list[Lesson]:
    return derive_lessons(replace(RUN, **overrides), now_ms=now_ms, new_id=new_id)


def one(now_ms: int = NOW, **overrides: Any) -> Lesson:
    lessons = derive(now_ms, **overrides)
    assert len(lessons) == 1, lessons
    return lessons[0]


# --- failure ------------------------------------------------------------------------------


def test_a_failure_is_keyed_per_agent_code_and_day() -> None:
    got = one(
        status=RunStatus.FAILED, error_code="step_failed", error_message="boom", failed_steps=("b",)
    )
    assert got == Lesson(
        id="lsn_fixed",
        tenant_id="ten_1",
        agent_id="agt_1",
        run_id="run_1",
        kind=LessonKind.FAILURE,
        dedupe_key="failure:agt_1:step_failed:2024-01-01",
        state=LessonState.PENDING,
        title="Agent agt_1 runs fail with step_failed",
        detail={
            "status": "failed",
            "error_code": "step_failed",
            "error_message": "boom",
            "failed_steps": ["b"],
        },
        proposed_rule=None,  # a failing step is not a policy matter
        created_at_ms=NOW,
        updated_at_ms=NOW,
    )


def test_a_denied_run_is_a_failure_lesson_and_an_unknown_code_is_named() -> None:
    denied = one(status=RunStatus.FAILED_POLICY, error_code="agent_budget_exhausted")
    assert denied.dedupe_key == "failure:agt_1:agent_budget_exhausted:2024-01-01"
    unknown = one(status=RunStatus.FAILED, error_code=None)
    assert unknown.dedupe_key == "failure:agt_1:unknown:2024-01-01"


def test_a_budget_failure_proposes_its_limit_as_a_standing_warn_rule() -> None:
    got = one(
        status=RunStatus.FAILED_POLICY,
        error_code="budget_exceeded",
        cost_micros=120,
        usage=Usage(5, 5),
        budget=RunBudget(max_cost_micros=100, max_tokens=1000),
    )
    assert got.proposed_rule == {
        "kind": "max_cost",
        "params": {"max_cost_micros": 100},
        "enforcement": "WARN",
        "scope": "agent",
        "agent_id": "agt_1",
    }


def test_a_timeout_failure_proposes_a_duration_rule() -> None:
    got = one(
        status=RunStatus.FAILED_POLICY,
        error_code="budget_exceeded",
        budget=RunBudget(timeout_s=0.5),
    )
    assert got.proposed_rule is not None
    assert (got.proposed_rule["kind"], got.proposed_rule["params"]) == (
        "max_duration",
        {"max_duration_s": 0.5},
    )


def test_cancelled_runs_teach_nothing() -> None:
    assert derive(status=RunStatus.CANCELLED, error_code="cancelled", cost_micros=95) == []


def test_no_lessons_before_the_run_is_final() -> None:
    with pytest.raises(InvariantError):
        derive(status=RunStatus.RUNNING)


# --- near threshold -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "band"),
    [
        (0.0, None),
        (0.8499, None),
        (0.85, "85-90"),
        (0.8999, "85-90"),
        (0.9, "90-95"),
        (0.9499, "90-95"),
        (0.95, "95-100"),
        (0.9999, "95-100"),
        (1.0, "95-100"),
        (1.0001, None),
        (float("inf"), None),
    ],
)
def test_band_edges(ratio: float, band: str | None) -> None:
    assert band_of(ratio) == band


@pytest.mark.parametrize(
    ("cost", "band"), [(84, None), (85, "85-90"), (90, "90-95"), (95, "95-100"), (100, "95-100")]
)
def test_near_threshold_once_per_band_per_agent_per_day(cost: int, band: str | None) -> None:
    lessons = [x for x in derive(cost_micros=cost) if x.kind is LessonKind.NEAR_THRESHOLD]
    assert [x.dedupe_key for x in lessons] == ([f"near:agt_1:{band}:2024-01-01"] if band else [])


def test_near_threshold_detail_and_proposal_at_the_observed_level() -> None:
    got = one(
        cost_micros=10, usage=Usage(900, 20), budget=RunBudget(max_cost_micros=100, max_tokens=1000)
    )
    assert (got.kind, got.title) == (
        LessonKind.NEAR_THRESHOLD,
        "Agent agt_1 used 92% of its tokens budget",
    )
    assert got.detail == {"band": "90-95", "dimension": "tokens", "ratio": 0.92}
    assert got.proposed_rule == {
        "kind": "max_tokens",
        "params": {"max_tokens": 920},
        "enforcement": "WARN",
        "scope": "agent",
        "agent_id": "agt_1",
    }


def test_over_budget_success_is_past_the_bands() -> None:
    assert derive(cost_micros=101) == []


@pytest.mark.parametrize(
    ("now_ms", "day"),
    [
        (0, "1970-01-01"),
        (DAY_MS - 1, "1970-01-01"),
        (DAY_MS, "1970-01-02"),
        (19_723 * DAY_MS - 1, "2023-12-31"),
        (19_723 * DAY_MS, "2024-01-01"),
    ],
)
def test_the_day_is_the_utc_day_of_now(now_ms: int, day: str) -> None:
    assert utc_day(now_ms) == day
    assert one(now_ms, cost_micros=90).dedupe_key == f"near:agt_1:90-95:{day}"


# --- critical success ---------------------------------------------------------------------


def test_a_cheap_fast_run_is_a_critical_success() -> None:
    got = one(cost_micros=29, budget=RunBudget(max_cost_micros=100, max_steps=10))
    assert (got.kind, got.dedupe_key, got.proposed_rule) == (
        LessonKind.CRITICAL_SUCCESS,
        "critical:agt_1:2024-01-01",
        None,
    )
    assert got.detail == {"ratios": {"cost": 0.29, "steps": 0.2}, "duration_ms": 1_000}


@pytest.mark.parametrize(
    ("overrides", "critical"),
    [
        ({"cost_micros": 30}, False),  # 30 % is not under 30 %
        ({"budget": RunBudget()}, False),  # no limit: no budget to be far under
        ({"finished_at_ms": 9_999}, True),  # no timeout: fast is under 10 s
        ({"finished_at_ms": 10_000}, False),
        ({"budget": RunBudget(max_cost_micros=100, timeout_s=5)}, True),  # 1 s of 5 s = 20 %
        ({"budget": RunBudget(max_cost_micros=100, timeout_s=3.4)}, True),
        ({"budget": RunBudget(max_cost_micros=100, timeout_s=3.3)}, False),  # 30.3 %
        ({"budget": RunBudget(timeout_s=100), "finished_at_ms": 20_000}, True),
        ({"steps_done": 3, "budget": RunBudget(max_cost_micros=100, max_steps=10)}, False),
    ],
)
def test_critical_success_needs_every_limit_under_30_percent_and_speed(
    overrides: dict[str, Any], critical: bool
) -> None:
    kinds = [x.kind for x in derive(**{"cost_micros": 10, **overrides})]
    assert kinds == ([LessonKind.CRITICAL_SUCCESS] if critical else [])


def test_an_ordinary_success_teaches_nothing() -> None:
    assert derive(cost_micros=50) == []


@given(st.integers(0, 200), st.integers(1, 200), st.integers(0, 2 * DAY_MS))
def test_at_most_one_lesson_and_keys_carry_agent_and_day(
    cost: int, limit: int, now_ms: int
) -> None:
    lessons = derive(now_ms, cost_micros=cost, budget=RunBudget(max_cost_micros=limit))
    assert len(lessons) <= 1
    day = utc_day(now_ms)
    for lesson in lessons:
        band = band_of(cost / limit)
        assert lesson.dedupe_key == (
            f"near:agt_1:{band}:{day}" if band else f"critical:agt_1:{day}"
        )
        if lesson.proposed_rule is not None:  # every draft is adoptable as it stands
            draft = lesson.proposed_rule
            made = new_rule(id="p", tenant_id="ten_1", now_ms=1, **draft)
            assert made.agent_id == "agt_1"


# --- lifecycle ----------------------------------------------------------------------------


def _pending() -> Lesson:
    return one(cost_micros=90)


def test_convert_hands_out_the_draft() -> None:
    lesson, draft = convert(_pending(), NOW + 1)
    assert (lesson.state, lesson.updated_at_ms) == (LessonState.CONVERTED_TO_DRAFT, NOW + 1)
    assert draft == _pending().proposed_rule
    assert draft is not _pending().proposed_rule


def test_a_deferred_lesson_can_come_back_or_be_converted_or_dismissed() -> None:
    deferred = defer(_pending(), NOW + 1)
    assert deferred.state is LessonState.DEFERRED
    assert reopen(deferred, NOW + 2).state is LessonState.PENDING
    assert dismiss(deferred, NOW + 2).state is LessonState.DISMISSED
    assert convert(deferred, NOW + 2)[0].state is LessonState.CONVERTED_TO_DRAFT


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (LessonState.PENDING, LessonState.PENDING),
        (LessonState.DEFERRED, LessonState.DEFERRED),
        (LessonState.DISMISSED, LessonState.PENDING),
        (LessonState.DISMISSED, LessonState.CONVERTED_TO_DRAFT),
        (LessonState.CONVERTED_TO_DRAFT, LessonState.PENDING),
        (LessonState.CONVERTED_TO_DRAFT, LessonState.DISMISSED),
    ],
)
def test_illegal_moves_are_conflicts(start: LessonState, to: LessonState) -> None:
    with pytest.raises(ConflictError, match=f"is {start.value}; it cannot become {to.value}"):
        move(replace(_pending(), state=start), to, NOW)


def test_converting_a_lesson_without_a_rule_is_a_conflict() -> None:
    critical = one(cost_micros=1, finished_at_ms=5)
    with pytest.raises(ConflictError, match="proposes no rule") as caught:
        convert(critical, NOW)
    assert caught.value.code == "lesson_without_rule"


def test_a_lesson_maps_the_lessons_columns() -> None:
    names = {f.name for f in dataclasses.fields(Lesson)}
    assert names == {c.name for c in tables.lessons.columns}
