"""The mid-run check's domain: what findings decide, the budget with paused time left out,
rule changes against the run's baseline, and require_approval matching."""

from __future__ import annotations

from typing import Any

import pytest

from runkernel.domain import midrun, midrun_rules
from runkernel.domain.midrun import CheckDecision, Finding, ViolationType
from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.pauses import PauseReason, close, open_pause, paused_ms
from runkernel.domain.policy import PolicyRule, bump, new_rule, validate_rule_params
from runkernel.domain.policy import RuleKind as K
from runkernel.domain.records import RunBudget
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import Usage
from runkernel.errors import ValidationError

V = ViolationType


def _f(*types: ViolationType) -> list[Finding]:
    return [Finding(t, t.value.lower()) for t in types]


@pytest.mark.parametrize(
    ("types", "decision", "deciding"),
    [
        ((), CheckDecision.CONTINUE, None),
        ((V.BUDGET_EXCEEDED,), CheckDecision.TERMINATE, V.BUDGET_EXCEEDED),
        ((V.MANUAL_STOP,), CheckDecision.TERMINATE, V.MANUAL_STOP),
        ((V.TENANT_SUSPENDED,), CheckDecision.TERMINATE, V.TENANT_SUSPENDED),
        ((V.LIMIT_CHANGED,), CheckDecision.PAUSE, V.LIMIT_CHANGED),
        ((V.POLICY_DISABLED,), CheckDecision.PAUSE, V.POLICY_DISABLED),
        ((V.APPROVAL_REQUIRED,), CheckDecision.PAUSE, V.APPROVAL_REQUIRED),
        # TERMINATE wins over PAUSE; a manual stop decides among terminating ones.
        ((V.APPROVAL_REQUIRED, V.BUDGET_EXCEEDED), CheckDecision.TERMINATE, V.BUDGET_EXCEEDED),
        ((V.BUDGET_EXCEEDED, V.TENANT_SUSPENDED), CheckDecision.TERMINATE, V.TENANT_SUSPENDED),
        ((V.TENANT_SUSPENDED, V.MANUAL_STOP), CheckDecision.TERMINATE, V.MANUAL_STOP),
        ((V.LIMIT_CHANGED, V.APPROVAL_REQUIRED), CheckDecision.PAUSE, V.APPROVAL_REQUIRED),
    ],
)
def test_findings_map_to_one_decision(
    types: tuple[ViolationType, ...], decision: CheckDecision, deciding: ViolationType | None
) -> None:
    result = midrun.result(_f(*types), step_index=3, checked_at_ms=10, duration_ms=0.1)
    assert (result.decision, result.deciding) == (decision, deciding)
    assert result.to_dict()["violations"] == [f.to_dict() for f in _f(*types)]


def test_a_terminate_names_its_code_and_a_pause_its_reason() -> None:
    def check(*types: ViolationType) -> midrun.PolicyCheckResult:
        return midrun.result(_f(*types), step_index=0, checked_at_ms=0, duration_ms=0)

    assert check(V.BUDGET_EXCEEDED).error_code == "budget_exceeded"
    assert check(V.TENANT_SUSPENDED).error_code == "tenant_suspended"
    assert check(V.MANUAL_STOP).error_code == "cancelled"
    assert check(V.APPROVAL_REQUIRED).pause_reason is PauseReason.APPROVAL_REQUIRED
    assert check(V.LIMIT_CHANGED).pause_reason is PauseReason.POLICY_CHANGE
    failed = midrun.failed_closed(
        RuntimeError("boom"), step_index=2, checked_at_ms=0, duration_ms=0
    )
    assert (failed.decision, failed.pause_reason) == (
        CheckDecision.PAUSE,
        PauseReason.POLICY_CHANGE,
    )
    assert "RuntimeError: boom" in failed.reason


def test_wall_time_leaves_out_the_time_the_run_spent_paused() -> None:
    budget = RunBudget(timeout_s=10)
    started, now = 1_000, 1_000 + 25_000  # 25 s of wall time, 20 s of it paused
    pause = close(
        open_pause(
            "r", 1, PauseReason.MANUAL_PAUSE, message="", paused_by="x", now_ms=2_000, sla_ms=1
        ),
        22_000,
        actor="x",
        outcome="resumed",
    )
    active = midrun.active_ms(started, now, paused_ms([pause], now))
    assert active == 5_000
    assert midrun.budget_exceeded(budget, 0, Usage(), 1, active) is None
    assert midrun.budget_exceeded(budget, 0, Usage(), 1, now - started) is not None  # the old bug


def _rule(kind: str, params: dict[str, Any], *, at: int = 100, **kw: Any) -> PolicyRule:
    return new_rule(id=f"pol_{kind}", tenant_id="t", kind=kind, params=params, now_ms=at, **kw)


def test_a_rule_changed_after_the_baseline_is_a_change_and_one_turned_off_is_disabled() -> None:
    rule = _rule("max_steps", {"max_steps": 5})
    assert midrun_rules.changed_rules([rule], "agent", since_ms=100) == []
    changed = bump(rule, {"params": {"max_steps": 3}}, 200)
    disabled = bump(rule, {"enforcement": "DISABLED"}, 200)
    retired = bump(rule, {"status": "RETIRED"}, 200)
    assert disabled.updated_at_ms == retired.updated_at_ms == 200  # turning off bumps too
    [(found,)] = [[f.type for f in midrun_rules.changed_rules([changed], "agent", 150)]]
    assert found is V.LIMIT_CHANGED
    for off in (disabled, retired):
        (f,) = midrun_rules.changed_rules([off], "agent", 150)
        assert f.type is V.POLICY_DISABLED
    other_agent = _rule("max_steps", {"max_steps": 1}, at=300, scope="agent", agent_id="other")
    assert midrun_rules.changed_rules([other_agent], "agent", 150) == []


def test_a_run_not_started_is_paused_only_by_a_change_its_plan_now_breaks_with_block() -> None:
    plan = RunOutcome(
        run_id="r",
        tenant_id="t",
        agent_id="agent",
        status=RunStatus.RUNNING,
        error_code=None,
        error_message=None,
        cost_micros=0,
        usage=Usage(),
        steps_total=3,
        steps_done=0,
        failed_steps=(),
        skills=("llm.chat",),
        budget=RunBudget(),
        started_at_ms=None,
        finished_at_ms=None,
    )
    unrelated = _rule("denied_skills", {"skills": ["http.request"]}, at=200)
    warned = _rule("max_steps", {"max_steps": 2}, at=200, enforcement="WARN")
    disabled = bump(_rule("max_steps", {"max_steps": 9}), {"enforcement": "DISABLED"}, 200)
    broken = _rule("max_steps", {"max_steps": 2}, at=200)
    rules = [unrelated, warned, disabled, broken]
    # A started run hears of every change; one not started only of what its plan breaks.
    assert len(midrun_rules.changed_rules(rules, "agent", 150)) == 4
    (found,) = midrun_rules.changed_rules(rules, "agent", 150, unstarted=plan)
    assert found.type is V.LIMIT_CHANGED and broken.id in found.message


def test_the_baseline_is_the_end_of_the_last_pause_or_the_submission() -> None:
    opened = open_pause(
        "r", 1, PauseReason.POLICY_CHANGE, message="", paused_by="x", now_ms=50, sla_ms=999
    )
    assert midrun_rules.baseline_ms(10, [opened]) == 10
    assert midrun_rules.baseline_ms(10, [close(opened, 70, actor="a", outcome="resumed")]) == 70


def test_approval_rules_match_skill_params_and_url_prefix() -> None:
    post = _rule("require_approval", {"skills": ["http.request"], "params": {"method": "POST"}})
    hook = _rule("require_approval", {"skills": ["webhook.send"], "url_prefix": "https://pay/"})
    rules = [post, hook]

    def needs(skill: str, params: Any) -> bool:
        return bool(midrun_rules.approval_rules(rules, "agent", skill, params))

    assert needs("http.request", {"method": "POST", "url": "https://x"})
    assert not needs("http.request", {"method": "GET", "url": "https://x"})
    assert needs("webhook.send", {"url": "https://pay/now"})
    assert not needs("webhook.send", {"url": "https://elsewhere/"})
    assert not needs("llm.chat", {})
    audit = _rule("require_approval", {"skills": ["llm.chat"]}, enforcement="AUDIT")
    assert not midrun_rules.approval_rules([audit], "agent", "llm.chat", {})


def test_a_resumed_approval_pause_approves_that_step_only() -> None:
    rule = _rule("require_approval", {"skills": ["llm.chat"]})
    pause = open_pause(
        "r",
        1,
        PauseReason.APPROVAL_REQUIRED,
        message="",
        paused_by="x",
        now_ms=1,
        sla_ms=9,
        step_index=2,
    )
    approved = midrun_rules.approved_steps([close(pause, 5, actor="a", outcome="resumed")])
    assert approved == frozenset({2})
    assert (
        midrun_rules.approved_steps([close(pause, 5, actor="a", outcome="rejected")]) == frozenset()
    )
    args = {"skill": "llm.chat", "params": {}, "approved": approved}
    assert midrun_rules.approval_findings([rule], "agent", step_index=2, **args) == []
    (f,) = midrun_rules.approval_findings([rule], "agent", step_index=3, **args)
    assert f.type is V.APPROVAL_REQUIRED


@pytest.mark.parametrize(
    "params",
    [
        {"skills": ["x"], "params": {}},
        {"skills": ["x"], "params": {"method": ["POST"]}},
        {"skills": ["x"], "url_prefix": ""},
        {"skills": ["x"], "url": "https://"},
    ],
)
def test_bad_approval_params_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validate_rule_params(K.REQUIRE_APPROVAL, params)


def test_approval_params_are_kept_normalized() -> None:
    given = {"skills": ["a", "a"], "params": {"method": "POST"}, "url_prefix": "https://p/"}
    assert validate_rule_params(K.REQUIRE_APPROVAL, given) == {
        "skills": ["a"],
        "params": {"method": "POST"},
        "url_prefix": "https://p/",
    }
