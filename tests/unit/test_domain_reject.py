"""``decide_reject``: the authorities that may resume a pause may reject it; a refusal is
recorded on the pause, no resume attempt is counted, and an accepted reject closes it."""

from __future__ import annotations

from runkernel.domain.pauses import (
    Pause,
    PauseReason,
    PauseResumeAuthority,
    Resumer,
    ResumeRefusal,
    close,
    decide_reject,
    open_pause,
)

ADMIN = Resumer("admin:k1", frozenset({PauseResumeAuthority.TENANT_ADMIN}))
USER = Resumer("user:k2", frozenset({PauseResumeAuthority.TENANT_USER}))


def _approval() -> Pause:
    return open_pause(
        "run", 1, PauseReason.APPROVAL_REQUIRED, message="", paused_by="system", now_ms=0, sla_ms=10
    )


def test_a_user_may_not_reject_an_approval_and_the_refusal_is_kept() -> None:
    pause = _approval()
    decision = decide_reject(pause, USER, 5)
    assert (decision.allowed, decision.refusal) == (False, ResumeRefusal.NOT_ALLOWED)
    assert decision.pause is not None and decision.pause.is_open
    assert [(r.actor, r.reason) for r in decision.pause.refusals] == [
        ("user:k2", ResumeRefusal.NOT_ALLOWED)
    ]
    assert decision.pause.resume_attempts == 0


def test_an_admin_rejects_even_an_expired_approval() -> None:
    decision = decide_reject(_approval(), ADMIN, 50)
    assert decision.allowed and decision.pause is not None
    assert (decision.pause.outcome, decision.pause.ended_by, decision.pause.ended_at_ms) == (
        "rejected",
        "admin:k1",
        50,
    )


def test_a_closed_pause_cannot_be_rejected() -> None:
    closed = close(_approval(), 3, actor="admin:k1", outcome="resumed")
    decision = decide_reject(closed, ADMIN, 5)
    assert (decision.allowed, decision.refusal) == (False, ResumeRefusal.NOT_PAUSED)
    assert decide_reject(None, ADMIN, 5).refusal is ResumeRefusal.NOT_PAUSED
