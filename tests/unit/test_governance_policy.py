"""Policy rules: params validation, scope, enforcement → outcome, versions, T0 skill checks."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.adapters.db import tables
from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.policy import (
    Enforcement,
    Evaluation,
    Outcome,
    PolicyRule,
    RuleKind,
    RuleRef,
    RuleStatus,
    Scope,
    Violation,
    bump,
    check_plan,
    describe,
    evaluate,
    new_rule,
    validate_rule_params,
)
from runkernel.domain.records import RunBudget
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import Usage
from runkernel.errors import ConflictError, InvariantError, ValidationError

RUN = RunOutcome(
    run_id="run_1",
    tenant_id="ten_1",
    agent_id="agt_1",
    status=RunStatus.SUCCEEDED,
    error_code=None,
    error_message=None,
    cost_micros=500_000,
    usage=Usage(60, 40),
    steps_total=3,
    steps_done=3,
    failed_steps=(),
    skills=("llm", "http"),
    budget=RunBudget(),
    started_at_ms=0,
    finished_at_ms=2_000,
)


def rule(
    kind: str,
    params: dict[str, Any],
    enforcement: str = "BLOCK",
    *,
    id: str = "pol_1",
    agent_id: str | None = None,
) -> PolicyRule:
    return new_rule(
        id=id,
        tenant_id="ten_1",
        kind=kind,
        params=params,
        enforcement=enforcement,
        scope="agent" if agent_id else "tenant",
        agent_id=agent_id,
        now_ms=1,
    )


# --- params -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "stored"),
    [
        (RuleKind.MAX_COST, {"max_cost_usd": 0.1}, {"max_cost_micros": 100_000}),
        (RuleKind.MAX_COST, {"max_cost_usd": 0}, {"max_cost_micros": 0}),
        (RuleKind.MAX_COST, {"max_cost_micros": 123}, {"max_cost_micros": 123}),
        (RuleKind.MAX_TOKENS, {"max_tokens": 1000}, {"max_tokens": 1000}),
        # JSON has no ints apart from numbers: 10.0 is the integer 10.
        (RuleKind.MAX_TOKENS, {"max_tokens": 10.0}, {"max_tokens": 10}),
        (RuleKind.MAX_STEPS, {"max_steps": 5}, {"max_steps": 5}),
        (RuleKind.MAX_DURATION, {"max_duration_s": 1.5}, {"max_duration_s": 1.5}),
        (RuleKind.MAX_DURATION, {"max_duration_s": 30}, {"max_duration_s": 30}),
        (RuleKind.DENIED_SKILLS, {"skills": ["a", "b", "a"]}, {"skills": ["a", "b"]}),
        (RuleKind.ALLOWED_SKILLS, {"skills": ["a"]}, {"skills": ["a"]}),
        (RuleKind.REQUIRE_APPROVAL, {"skills": ["llm"]}, {"skills": ["llm"]}),
    ],
)
def test_valid_params_are_normalized(
    kind: RuleKind, params: dict[str, Any], stored: dict[str, Any]
) -> None:
    normalized = validate_rule_params(kind, params)
    assert normalized == stored
    assert {k: type(v) for k, v in normalized.items()} == {k: type(v) for k, v in stored.items()}
    # Stored params validate to themselves, so a rule read back can be re-checked.
    assert validate_rule_params(kind, stored) == stored


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (RuleKind.MAX_COST, {}, "exactly one of max_cost_usd or max_cost_micros"),
        (RuleKind.MAX_COST, {"max_cost_usd": 1, "max_cost_micros": 1}, "exactly one"),
        (RuleKind.MAX_COST, {"max_cost_usd": -0.01}, "'max_cost_usd': a finite number ≥ 0"),
        (RuleKind.MAX_COST, {"max_cost_usd": "1"}, "got '1'"),
        (RuleKind.MAX_COST, {"max_cost_usd": float("nan")}, "a finite number"),
        (RuleKind.MAX_COST, {"max_cost_usd": float("inf")}, "a finite number"),
        (RuleKind.MAX_COST, {"max_cost_micros": 1.5}, "an integer ≥ 0"),
        (RuleKind.MAX_COST, {"max_usd": 1}, "max_cost does not take max_usd"),
        (RuleKind.MAX_TOKENS, {}, "'max_tokens': an integer ≥ 0, got None"),
        (RuleKind.MAX_TOKENS, {"max_tokens": True}, "got True"),
        (RuleKind.MAX_TOKENS, {"max_tokens": 10.5}, "an integer"),
        (RuleKind.MAX_STEPS, {"max_steps": -1}, "an integer ≥ 0"),
        (RuleKind.MAX_STEPS, {"max_steps": 1, "extra": 2}, "does not take extra"),
        (RuleKind.MAX_DURATION, {"max_duration_s": -1}, "a finite number ≥ 0"),
        (RuleKind.DENIED_SKILLS, {"skills": []}, "a non-empty list"),
        (RuleKind.ALLOWED_SKILLS, {"skills": "llm"}, "a non-empty list"),
        (RuleKind.REQUIRE_APPROVAL, {"skills": ["ok", ""]}, "every skill must be a non-empty"),
        (RuleKind.DENIED_SKILLS, {"skills": [1]}, "every skill must be a non-empty"),
    ],
)
def test_bad_params_are_refused_clearly(
    kind: RuleKind, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        validate_rule_params(kind, params)


@pytest.mark.parametrize(
    ("field", "value"), [("kind", "max_money"), ("enforcement", "LOUD"), ("scope", "global")]
)
def test_new_rule_refuses_unknown_names(field: str, value: str) -> None:
    fields: dict[str, Any] = {"kind": "max_steps", "enforcement": "WARN", "scope": "tenant"}
    fields[field] = value
    with pytest.raises(ValidationError, match=f"{field} must be one of .*got '{value}'"):
        new_rule(id="p", tenant_id="t", params={"max_steps": 1}, now_ms=1, **fields)


def test_scope_and_agent_id_must_agree() -> None:
    with pytest.raises(ValidationError, match="agent-scoped rule needs agent_id"):
        new_rule(
            id="p",
            tenant_id="t",
            kind="max_steps",
            params={"max_steps": 1},
            scope="agent",
            now_ms=1,
        )
    with pytest.raises(ValidationError):
        new_rule(
            id="p",
            tenant_id="t",
            kind="max_steps",
            params={"max_steps": 1},
            scope="tenant",
            agent_id="agt_1",
            now_ms=1,
        )


def test_a_rule_maps_the_policy_rules_columns() -> None:
    names = {f.name for f in dataclasses.fields(PolicyRule)}
    assert names == {c.name for c in tables.policy_rules.columns}
    made = rule("max_steps", {"max_steps": 2})
    assert (made.status, made.version, made.created_at_ms) == (RuleStatus.ACTIVE, 1, 1)


# --- evaluation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "violated", "message"),
    [
        ("max_cost", {"max_cost_usd": 0.5}, False, None),  # exactly the limit passes
        ("max_cost", {"max_cost_micros": 499_999}, True, "cost 500000 micros is over the limit"),
        ("max_tokens", {"max_tokens": 100}, False, None),
        ("max_tokens", {"max_tokens": 99}, True, "100 tokens is over the limit of 99"),
        ("max_steps", {"max_steps": 3}, False, None),
        ("max_steps", {"max_steps": 2}, True, "3 steps is over the limit of 2"),
        ("max_duration", {"max_duration_s": 2}, False, None),
        ("max_duration", {"max_duration_s": 1.999}, True, "run time 2000 ms is over"),
        ("allowed_skills", {"skills": ["llm", "http", "x"]}, False, None),
        ("allowed_skills", {"skills": ["llm"]}, True, "skills not allowed: http"),
        ("denied_skills", {"skills": ["shell"]}, False, None),
        ("denied_skills", {"skills": ["http", "llm"]}, True, "skills denied: llm, http"),
        ("require_approval", {"skills": ["llm"]}, False, None),  # enforced before the step
    ],
)
def test_each_kind_judges_its_dimension(
    kind: str, params: dict[str, Any], violated: bool, message: str | None
) -> None:
    got = evaluate([rule(kind, params)], RUN)
    assert got.outcome is (Outcome.VIOLATION if violated else Outcome.PASS)
    assert len(got.violations) == int(violated)
    if message:
        assert got.violations[0].message.startswith(message)


def test_duration_is_not_judged_for_a_run_that_never_started() -> None:
    never = replace(RUN, started_at_ms=None)
    assert evaluate([rule("max_duration", {"max_duration_s": 0})], never).outcome is Outcome.PASS


TIGHT = {"max_steps": 1}  # RUN did 3 steps: this rule is broken whatever its enforcement


@pytest.mark.parametrize(
    ("enforcements", "outcome"),
    [
        ([], Outcome.PASS),
        (["BLOCK"], Outcome.VIOLATION),
        (["WARN"], Outcome.WARN),
        (["AUDIT"], Outcome.PASS),
        (["DISABLED"], Outcome.PASS),
        (["WARN", "AUDIT"], Outcome.WARN),
        (["AUDIT", "BLOCK", "WARN"], Outcome.VIOLATION),
        (["DISABLED", "WARN"], Outcome.WARN),
    ],
)
def test_enforcement_decides_the_outcome(enforcements: list[str], outcome: Outcome) -> None:
    rules = [rule("max_steps", TIGHT, e, id=f"pol_{i}") for i, e in enumerate(enforcements)]
    got = evaluate(rules, RUN)
    assert got.outcome is outcome
    # AUDIT violations are recorded; DISABLED rules never violate but are listed.
    recorded = [e for e in enforcements if e != "DISABLED"]
    assert [v.enforcement.value for v in got.violations] == recorded
    assert [r.enforcement.value for r in got.rules] == enforcements


def test_scope_retired_rules_and_other_agents() -> None:
    tenant_wide = rule("max_steps", TIGHT, "WARN", id="pol_t")
    mine = rule("max_steps", TIGHT, "WARN", id="pol_mine", agent_id="agt_1")
    other = rule("max_steps", TIGHT, "BLOCK", id="pol_other", agent_id="agt_2")
    retired = replace(rule("max_steps", TIGHT, "BLOCK", id="pol_old"), status=RuleStatus.RETIRED)
    got = evaluate([tenant_wide, mine, other, retired], RUN)
    assert got.outcome is Outcome.WARN
    assert [r.id for r in got.rules] == ["pol_t", "pol_mine"]
    assert [v.rule_id for v in got.violations] == ["pol_t", "pol_mine"]


def test_another_tenants_rule_is_a_bug_not_a_filter() -> None:
    foreign = replace(rule("max_steps", TIGHT), tenant_id="ten_2")
    with pytest.raises(InvariantError, match="another tenant"):
        evaluate([foreign], RUN)


def test_evaluation_records_rule_versions() -> None:
    edited = bump(rule("max_steps", TIGHT, "WARN"), {"enforcement": "BLOCK"}, now_ms=5)
    got = evaluate([edited], RUN)
    assert got == Evaluation(
        Outcome.VIOLATION,
        (
            Violation(
                "pol_1", 2, RuleKind.MAX_STEPS, Enforcement.BLOCK, "3 steps is over the limit of 1"
            ),
        ),
        (RuleRef("pol_1", 2, RuleKind.MAX_STEPS, Enforcement.BLOCK),),
    )
    assert got.to_dict() == {
        "outcome": "VIOLATION",
        "violations": [
            {
                "rule_id": "pol_1",
                "rule_version": 2,
                "kind": "max_steps",
                "enforcement": "BLOCK",
                "message": "3 steps is over the limit of 1",
            }
        ],
        "rules": [{"id": "pol_1", "version": 2, "kind": "max_steps", "enforcement": "BLOCK"}],
    }
    stored = {c.name for c in tables.policy_evaluations.columns}
    assert set(got.to_dict()) <= stored


_kinds = st.sampled_from(
    [
        ("max_steps", TIGHT),
        ("max_cost", {"max_cost_micros": 1}),
        ("denied_skills", {"skills": ["llm"]}),
    ]
)
_enforcements = st.sampled_from(list(Enforcement))


@given(st.lists(st.tuples(_kinds, _enforcements), max_size=6))
def test_without_active_rules_everything_passes(specs: list[Any]) -> None:
    rules = [
        replace(rule(k, p, e, id=f"pol_{i}"), status=RuleStatus.RETIRED)
        for i, ((k, p), e) in enumerate(specs)
    ]
    assert evaluate(rules, RUN) == Evaluation(Outcome.PASS, (), ())


@given(st.lists(st.tuples(_kinds, _enforcements), max_size=6), _kinds)
def test_a_disabled_rule_never_changes_the_outcome(specs: list[Any], extra: Any) -> None:
    rules = [rule(k, p, e, id=f"pol_{i}") for i, ((k, p), e) in enumerate(specs)]
    before = evaluate(rules, RUN)
    after = evaluate([*rules, rule(extra[0], extra[1], "DISABLED", id="pol_x")], RUN)
    assert (after.outcome, after.violations) == (before.outcome, before.violations)


# --- versions -----------------------------------------------------------------------------


def test_every_change_bumps_the_version() -> None:
    first = rule("max_steps", {"max_steps": 1})
    second = bump(first, {"params": {"max_steps": 4}}, now_ms=10)
    third = bump(second, {"params": {"max_steps": 4}}, now_ms=20)  # same value: still an edit
    assert (second.version, second.params, second.updated_at_ms) == (2, {"max_steps": 4}, 10)
    assert (third.version, third.created_at_ms) == (3, 1)
    scoped = bump(third, {"scope": "agent", "agent_id": "agt_1"}, now_ms=30)
    assert (scoped.scope, scoped.agent_id, scoped.version) == (Scope.AGENT, "agt_1", 4)
    retired = bump(scoped, {"status": "RETIRED"}, now_ms=40)
    assert (retired.status, retired.version) == (RuleStatus.RETIRED, 5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "no changes"),
        ({"kind": "max_cost"}, "cannot change kind"),
        ({"version": 9}, "cannot change version"),
        ({"params": {"max_steps": -1}}, "an integer ≥ 0"),
        ({"enforcement": "LOUD"}, "enforcement must be one of"),
        ({"scope": "agent"}, "needs agent_id"),
    ],
)
def test_bad_changes_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        bump(rule("max_steps", {"max_steps": 1}), changes, now_ms=2)


def test_a_retired_rule_cannot_change() -> None:
    retired = bump(rule("max_steps", {"max_steps": 1}), {"status": "RETIRED"}, now_ms=2)
    with pytest.raises(ConflictError, match="retired") as caught:
        bump(retired, {"status": "ACTIVE"}, now_ms=3)
    assert caught.value.code == "rule_retired"


# --- T0 plan check ------------------------------------------------------------------------

# A run as it is at submission: nothing done yet, a plan of three steps.
PLANNED = replace(
    RUN,
    status=RunStatus.QUEUED,
    cost_micros=0,
    usage=Usage(),
    steps_done=0,
    skills=("llm", "shell", "http"),
    started_at_ms=None,
    finished_at_ms=None,
)


def test_plan_check_refuses_on_in_scope_block_rules_and_notes_the_others() -> None:
    rules = [
        rule("denied_skills", {"skills": ["shell"]}, id="pol_deny"),
        rule("allowed_skills", {"skills": ["llm", "shell"]}, id="pol_allow", agent_id="agt_1"),
        rule("denied_skills", {"skills": ["llm"]}, "WARN", id="pol_warn"),
        rule("denied_skills", {"skills": ["llm"]}, "AUDIT", id="pol_audit"),
        rule("denied_skills", {"skills": ["llm"]}, "DISABLED", id="pol_off"),
        rule("denied_skills", {"skills": ["llm"]}, id="pol_other", agent_id="agt_2"),
        replace(
            rule("denied_skills", {"skills": ["llm"]}, id="pol_old"), status=RuleStatus.RETIRED
        ),
        rule("max_steps", {"max_steps": 2}, id="pol_steps"),
    ]
    got = check_plan(rules, PLANNED)
    assert got.refused
    assert [(v.rule_id, v.message) for v in got.blocking] == [
        ("pol_deny", "skills denied: shell"),
        ("pol_allow", "skills not allowed: http"),
        ("pol_steps", "3 planned steps is over the limit of 2"),
    ]
    assert [v.rule_id for v in got.noted] == ["pol_warn", "pol_audit"]
    assert describe(got.blocking[:1]) == (
        "rule pol_deny v1 (denied_skills, BLOCK): skills denied: shell"
    )
    fine = check_plan(rules, replace(PLANNED, skills=("shell",), steps_total=2))
    assert fine.refused  # shell is still denied
    assert not check_plan(rules[1:], replace(PLANNED, skills=("llm",), steps_total=2)).refused


@pytest.mark.parametrize(
    ("kind", "params", "budget", "message"),
    [
        ("max_steps", {"max_steps": 3}, RunBudget(), None),  # exactly the limit passes
        ("max_steps", {"max_steps": 2}, RunBudget(), "3 planned steps is over the limit of 2"),
        ("max_steps", {"max_steps": 2}, RunBudget(max_steps=2), None),  # the budget stops it
        ("max_cost", {"max_cost_micros": 1}, RunBudget(), None),  # unlimited: unknown at T0
        ("max_cost", {"max_cost_micros": 100}, RunBudget(max_cost_micros=100), None),
        (
            "max_cost",
            {"max_cost_micros": 100},
            RunBudget(max_cost_micros=101),
            "a budget of 101 micros is over the limit of 100",
        ),
        (
            "max_tokens",
            {"max_tokens": 10},
            RunBudget(max_tokens=11),
            "a budget of 11 tokens is over the limit of 10",
        ),
        ("max_tokens", {"max_tokens": 10}, RunBudget(), None),
        (
            "max_duration",
            {"max_duration_s": 1},
            RunBudget(timeout_s=1.5),
            "a timeout of 1500 ms is over the limit of 1 s",
        ),
        ("max_duration", {"max_duration_s": 1}, RunBudget(timeout_s=1), None),
        ("max_duration", {"max_duration_s": 0}, RunBudget(), None),
        ("require_approval", {"skills": ["shell"]}, RunBudget(), None),  # paused before the step
    ],
)
def test_plan_check_judges_the_plan_and_the_budget(
    kind: str, params: dict[str, Any], budget: RunBudget, message: str | None
) -> None:
    got = check_plan([rule(kind, params)], replace(PLANNED, budget=budget))
    assert got.refused is (message is not None)
    assert [v.message for v in got.blocking] == ([message] if message else [])


def test_a_run_never_started_is_evaluated_as_its_plan_was_checked() -> None:
    """One function: a run refused at T0 (or cancelled while queued) gets at completion
    the evaluation its plan got at submission."""
    rules = [
        rule("max_steps", {"max_steps": 1}, id="pol_steps"),
        rule("max_cost", {"max_cost_micros": 10}, "WARN", id="pol_cost"),
    ]
    queued = replace(PLANNED, budget=RunBudget(max_cost_micros=20))
    refused = replace(queued, status=RunStatus.FAILED_POLICY, finished_at_ms=5)
    assert evaluate(rules, refused) == check_plan(rules, queued).evaluation
    assert evaluate(rules, refused).outcome is Outcome.VIOLATION


def test_a_started_run_is_past_its_plan_check() -> None:
    with pytest.raises(InvariantError, match="has started"):
        check_plan([], RUN)
