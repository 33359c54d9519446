"""Who may resume a pause, when it may no longer be resumed, and what its expiry does."""

from __future__ import annotations

from typing import Any

import pytest

from runkernel.domain.pauses import (
    DEFAULT_AUTHORITIES,
    ESCALATION_FACTOR,
    SYSTEM,
    Pause,
    PauseReason,
    PauseResumeAuthority,
    ResumeRefusal,
    TimeoutBehaviour,
    close,
    escalate,
    expiring_notice_due,
    expiring_notified,
    moved_deadline,
    open_pause,
    paused_ms,
    timeout_action,
)
from runkernel.domain.pauses import (
    decide_resume as decide,
)
from runkernel.domain.permissions import resumer
from runkernel.domain.records import Principal, Role

A = PauseResumeAuthority
ADMIN = Principal("t1", "k-admin", Role.ADMIN)
USER = Principal("t1", "k-user", Role.USER)
OWNER = Principal("t1", "k-owner", Role.USER)
OPERATOR = Principal.operator("k-op")
SLA = 1_000


def decide_resume(pause: Pause | None, principal: Principal | None, now_ms: int) -> Any:
    """As the service asks: a key resumes as what its role (and ownership) make it."""
    who = SYSTEM if principal is None else resumer(principal, "k-owner")
    return decide(pause, who, now_ms)


def _pause(reason: PauseReason, on_timeout: TimeoutBehaviour = TimeoutBehaviour.TERMINATE) -> Pause:
    return open_pause(
        "r1",
        1,
        reason,
        message="m",
        paused_by="admin:k-admin",
        now_ms=100,
        sla_ms=SLA,
        key_owner="k-owner",
        on_timeout=on_timeout,
    )


def test_each_reason_has_the_default_authorities_of_the_design() -> None:
    assert {
        PauseReason.POLICY_CHANGE: {A.TENANT_ADMIN, A.OPERATOR},
        PauseReason.BUDGET_WARNING: {A.TENANT_ADMIN, A.API_KEY_OWNER},
        PauseReason.APPROVAL_REQUIRED: {A.TENANT_ADMIN},
        PauseReason.RATE_LIMIT_SOFT: {A.SYSTEM_AUTO, A.TENANT_ADMIN},
        PauseReason.MANUAL_PAUSE: {A.TENANT_ADMIN, A.TENANT_USER, A.API_KEY_OWNER},
    } == DEFAULT_AUTHORITIES
    p = _pause(PauseReason.MANUAL_PAUSE)
    assert (p.expires_at_ms, p.on_timeout) == (100 + SLA, TimeoutBehaviour.TERMINATE)


@pytest.mark.parametrize(
    ("reason", "principal", "allowed"),
    [
        (PauseReason.POLICY_CHANGE, ADMIN, True),
        (PauseReason.POLICY_CHANGE, OPERATOR, True),
        (PauseReason.POLICY_CHANGE, USER, False),
        (PauseReason.POLICY_CHANGE, OWNER, False),
        (PauseReason.POLICY_CHANGE, None, False),
        (PauseReason.BUDGET_WARNING, OWNER, True),
        (PauseReason.BUDGET_WARNING, USER, False),
        (PauseReason.APPROVAL_REQUIRED, ADMIN, True),
        (PauseReason.APPROVAL_REQUIRED, OWNER, False),
        (PauseReason.RATE_LIMIT_SOFT, None, True),
        (PauseReason.RATE_LIMIT_SOFT, USER, False),
        (PauseReason.MANUAL_PAUSE, USER, True),
        (PauseReason.MANUAL_PAUSE, OPERATOR, False),
    ],
)
def test_resume_is_allowed_only_to_the_pause_authorities(
    reason: PauseReason, principal: Principal | None, allowed: bool
) -> None:
    decision = decide_resume(_pause(reason), principal, now_ms=500)
    assert decision.allowed is allowed
    assert decision.pause is not None
    assert decision.pause.resume_attempts == 1
    if allowed:
        assert decision.refusal is None
        assert (decision.pause.ended_at_ms, decision.pause.outcome) == (500, "resumed")
    else:
        assert decision.refusal is ResumeRefusal.NOT_ALLOWED
        assert decision.pause.is_open
        (refusal,) = decision.pause.refusals
        assert (refusal.reason, refusal.at_ms) == (ResumeRefusal.NOT_ALLOWED, 500)
        assert reason.value in refusal.message


def test_refusals_accumulate_with_the_last_actor() -> None:
    first = decide_resume(_pause(PauseReason.POLICY_CHANGE), USER, now_ms=200)
    assert first.pause is not None
    second = decide_resume(first.pause, OWNER, now_ms=300)
    assert second.pause is not None
    assert second.pause.resume_attempts == 2
    assert second.pause.last_actor == "user:k-owner"
    assert [r.actor for r in second.pause.refusals] == ["user:k-user", "user:k-owner"]
    third = decide_resume(second.pause, ADMIN, now_ms=400)
    assert third.allowed and third.pause is not None
    assert (third.pause.resume_attempts, third.pause.ended_by) == (3, "admin:k-admin")


def test_an_expired_pause_is_refused_even_to_its_authorities() -> None:
    decision = decide_resume(_pause(PauseReason.MANUAL_PAUSE), ADMIN, now_ms=100 + SLA)
    assert (decision.allowed, decision.refusal) == (False, ResumeRefusal.EXPIRED)


def test_a_run_that_is_not_paused_cannot_be_resumed() -> None:
    assert decide_resume(None, ADMIN, now_ms=1).refusal is ResumeRefusal.NOT_PAUSED
    ended = close(_pause(PauseReason.MANUAL_PAUSE), 150, actor="system", outcome="terminated")
    decision = decide_resume(ended, ADMIN, now_ms=200)
    assert decision.refusal is ResumeRefusal.NOT_PAUSED
    assert decision.pause == ended  # nothing to count on a closed pause


@pytest.mark.parametrize("behaviour", list(TimeoutBehaviour))
def test_a_pause_times_out_only_once_expired(behaviour: TimeoutBehaviour) -> None:
    p = _pause(PauseReason.MANUAL_PAUSE, on_timeout=behaviour)
    assert timeout_action(p, 100 + SLA - 1) is None
    assert timeout_action(p, 100 + SLA) is behaviour
    assert timeout_action(close(p, 200, actor="x", outcome="resumed"), 10**9) is None


def test_an_escalation_extends_the_sla_once_then_terminates() -> None:
    p = _pause(PauseReason.MANUAL_PAUSE, on_timeout=TimeoutBehaviour.ESCALATE)
    now = 100 + SLA
    escalated = escalate(p, now, SLA)
    assert escalated.expires_at_ms == now + ESCALATION_FACTOR * SLA
    assert timeout_action(escalated, now + 1) is None
    assert timeout_action(escalated, escalated.expires_at_ms) is TimeoutBehaviour.TERMINATE


def test_time_paused_counts_ended_pauses_in_full_and_the_open_one_until_now() -> None:
    done = close(_pause(PauseReason.MANUAL_PAUSE), 400, actor="x", outcome="resumed")
    again = open_pause(
        "r1", 2, PauseReason.MANUAL_PAUSE, message="", paused_by="x", now_ms=1_000, sla_ms=SLA
    )
    assert paused_ms([done, again], now_ms=1_250) == 300 + 250


def test_the_liveness_deadline_moves_by_time_paused_but_an_open_pause_only_until_its_sla() -> None:
    done = close(_pause(PauseReason.MANUAL_PAUSE), 400, actor="x", outcome="resumed")
    assert moved_deadline(5_000, [done], now_ms=10**9) == 5_000 + 300
    open_one = _pause(PauseReason.MANUAL_PAUSE)  # paused at 100, expires at 1_100
    assert moved_deadline(5_000, [open_one], now_ms=600) == 5_000 + 500
    assert moved_deadline(5_000, [open_one], now_ms=10**9) == 5_000 + SLA


def test_an_expiry_notice_is_due_once_per_expiry_inside_its_window() -> None:
    pause = _pause(PauseReason.MANUAL_PAUSE, TimeoutBehaviour.ESCALATE)  # expires at 1100
    before = 300
    assert not expiring_notice_due(pause, 799, before)  # not yet in the window
    assert expiring_notice_due(pause, 800, before)
    assert expiring_notice_due(pause, 1099, before)
    assert not expiring_notice_due(pause, 1100, before)  # expired: the timeout applies
    told = expiring_notified(pause)
    assert told.expiring_notified_for_ms == 1100
    assert not expiring_notice_due(told, 900, before)  # once
    assert not expiring_notice_due(pause, 900, 0)  # 0: notices are off
    assert not expiring_notice_due(close(pause, 900, actor="a", outcome="resumed"), 950, before)
    longer = escalate(told, 1100, SLA)  # an escalation's new expiry gets its own notice
    assert not expiring_notice_due(longer, 1200, before)
    assert expiring_notice_due(longer, longer.expires_at_ms - before, before)
