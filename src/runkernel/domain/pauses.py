"""Pauses: why a run waits, who may let it go on, and what happens when nobody does.

A pause is a record apart from the run's (phase, status): the run sits in
EXECUTING/paused, and its pause says why (the reason), who may resume it (the
authorities, defaulted per reason), until when (the SLA expiry) and what its expiry does
(the timeout behaviour). Every resume attempt is decided here by :func:`decide_resume`
and kept on the pause — a refusal too, with its reason — so a pause is its own audit.

Pure: the service loads a pause, asks this module, and stores what it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum


class PauseReason(StrEnum):
    POLICY_CHANGE = "POLICY_CHANGE"
    BUDGET_WARNING = "BUDGET_WARNING"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    RATE_LIMIT_SOFT = "RATE_LIMIT_SOFT"
    MANUAL_PAUSE = "MANUAL_PAUSE"


class PauseResumeAuthority(StrEnum):
    TENANT_ADMIN = "TENANT_ADMIN"
    TENANT_USER = "TENANT_USER"
    SYSTEM_AUTO = "SYSTEM_AUTO"
    API_KEY_OWNER = "API_KEY_OWNER"  # the key that submitted the run
    OPERATOR = "OPERATOR"


class TimeoutBehaviour(StrEnum):
    TERMINATE = "TERMINATE"  # the run ends failed_policy
    CONTINUE = "CONTINUE"  # the system resumes it
    ESCALATE = "ESCALATE"  # an incident, and a longer SLA; a second expiry terminates


class ResumeRefusal(StrEnum):
    NOT_PAUSED = "not_paused"
    NOT_ALLOWED = "not_allowed"
    EXPIRED = "expired"


_A = PauseResumeAuthority
SYSTEM_ACTOR = "system"

# Who may resume a pause of each reason unless the pause names others. A policy change
# is the tenant's rules moving under a run: its admin (or the operator) decides; budget is
# money the admin or the key that spends it answers for; an approval is the admin's; a
# soft rate limit lifts by itself.
DEFAULT_AUTHORITIES: Mapping[PauseReason, frozenset[PauseResumeAuthority]] = {
    PauseReason.POLICY_CHANGE: frozenset({_A.TENANT_ADMIN, _A.OPERATOR}),
    PauseReason.BUDGET_WARNING: frozenset({_A.TENANT_ADMIN, _A.API_KEY_OWNER}),
    PauseReason.APPROVAL_REQUIRED: frozenset({_A.TENANT_ADMIN}),
    PauseReason.RATE_LIMIT_SOFT: frozenset({_A.SYSTEM_AUTO, _A.TENANT_ADMIN}),
    PauseReason.MANUAL_PAUSE: frozenset({_A.TENANT_ADMIN, _A.TENANT_USER, _A.API_KEY_OWNER}),
}

# An escalated pause gets this many SLAs more before its second expiry terminates it.
ESCALATION_FACTOR = 2


@dataclass(frozen=True, slots=True)
class Refusal:
    actor: str
    at_ms: int
    reason: ResumeRefusal
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "actor": self.actor,
            "at_ms": self.at_ms,
            "reason": self.reason.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Pause:
    """The ``number``-th pause of run ``run_id``; open while ``ended_at_ms`` is None."""

    run_id: str
    number: int
    reason: PauseReason
    message: str
    violations: tuple[str, ...]
    paused_at_ms: int
    expires_at_ms: int
    authorities: frozenset[PauseResumeAuthority]
    on_timeout: TimeoutBehaviour
    paused_by: str
    key_owner: str | None = None  # the api key id that submitted the run
    escalations: int = 0
    resume_attempts: int = 0
    last_actor: str | None = None
    refusals: tuple[Refusal, ...] = ()
    ended_at_ms: int | None = None
    ended_by: str | None = None
    outcome: str | None = None  # resumed | terminated | rejected | failed
    # The step the run paused before (None for pauses stored before it was recorded): an
    # APPROVAL_REQUIRED pause of step N that was resumed is the approval of step N.
    step_index: int | None = None
    # The SLA expiry run.pause_expiring was sent for (an escalation sets a new expiry).
    expiring_notified_for_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.ended_at_ms is None


def open_pause(
    run_id: str,
    number: int,
    reason: PauseReason,
    *,
    message: str,
    paused_by: str,
    now_ms: int,
    sla_ms: int,
    violations: tuple[str, ...] = (),
    key_owner: str | None = None,
    authorities: frozenset[PauseResumeAuthority] | None = None,
    on_timeout: TimeoutBehaviour = TimeoutBehaviour.TERMINATE,
    step_index: int | None = None,
) -> Pause:
    return Pause(
        run_id=run_id,
        number=number,
        reason=reason,
        message=message,
        violations=violations,
        paused_at_ms=now_ms,
        expires_at_ms=now_ms + sla_ms,
        authorities=DEFAULT_AUTHORITIES[reason] if authorities is None else authorities,
        on_timeout=on_timeout,
        paused_by=paused_by,
        key_owner=key_owner,
        step_index=step_index,
    )


@dataclass(frozen=True, slots=True)
class Resumer:
    """Who asks for a resume, and as what (``domain.permissions.resumer`` maps a key)."""

    actor: str
    authorities: frozenset[PauseResumeAuthority]


SYSTEM = Resumer(SYSTEM_ACTOR, frozenset({PauseResumeAuthority.SYSTEM_AUTO}))


@dataclass(frozen=True, slots=True)
class ResumeDecision:
    allowed: bool
    pause: Pause | None  # the pause as it is to be stored, the attempt counted
    refusal: ResumeRefusal | None = None
    message: str = ""


def decide_resume(pause: Pause | None, resumer: Resumer, now_ms: int) -> ResumeDecision:
    """Whether ``resumer`` may resume ``pause`` now; either way the attempt is counted on
    the returned pause, a refusal recorded with its reason."""
    if pause is None or not pause.is_open:
        return ResumeDecision(False, pause, ResumeRefusal.NOT_PAUSED, "the run is not paused")
    actor = resumer.actor
    counted = replace(pause, resume_attempts=pause.resume_attempts + 1, last_actor=actor)
    refusal: tuple[ResumeRefusal, str] | None = None
    if now_ms >= pause.expires_at_ms:
        refusal = (ResumeRefusal.EXPIRED, f"the pause expired at {pause.expires_at_ms} ms")
    else:
        refusal = _not_allowed(pause, resumer)
    if refusal is not None:
        return _refused(counted, actor, now_ms, refusal)
    resumed = replace(counted, ended_at_ms=now_ms, ended_by=actor, outcome="resumed")
    return ResumeDecision(True, resumed)


def decide_reject(pause: Pause | None, resumer: Resumer, now_ms: int) -> ResumeDecision:
    """Whether ``resumer`` may reject ``pause`` (end the run instead of resuming it): the
    same authorities decide as for a resume. An expired pause may be rejected — ending
    the run is what its timeout would do at the latest. A refusal is recorded; a reject
    is no resume attempt, so none is counted."""
    if pause is None or not pause.is_open:
        return ResumeDecision(False, pause, ResumeRefusal.NOT_PAUSED, "the run is not paused")
    actor = resumer.actor
    seen = replace(pause, last_actor=actor)
    refusal = _not_allowed(pause, resumer)
    if refusal is not None:
        return _refused(seen, actor, now_ms, refusal)
    return ResumeDecision(True, close(seen, now_ms, actor=actor, outcome="rejected"))


def _not_allowed(pause: Pause, resumer: Resumer) -> tuple[ResumeRefusal, str] | None:
    if resumer.authorities & pause.authorities:
        return None
    needed = " or ".join(sorted(a.value for a in pause.authorities))
    mine = ", ".join(sorted(a.value for a in resumer.authorities))
    return (
        ResumeRefusal.NOT_ALLOWED,
        f"a {pause.reason.value} pause is resumed by {needed}; this caller is {mine}",
    )


def _refused(
    pause: Pause, actor: str, now_ms: int, refusal: tuple[ResumeRefusal, str]
) -> ResumeDecision:
    kept = Refusal(actor, now_ms, *refusal)
    return ResumeDecision(False, replace(pause, refusals=(*pause.refusals, kept)), *refusal)


def timeout_action(pause: Pause, now_ms: int) -> TimeoutBehaviour | None:
    """What an open pause's expiry does now, or None while it has not expired. An
    escalated pause that expires again terminates: an escalation is heard once."""
    if not pause.is_open or now_ms < pause.expires_at_ms:
        return None
    if pause.on_timeout is TimeoutBehaviour.ESCALATE and pause.escalations > 0:
        return TimeoutBehaviour.TERMINATE
    return pause.on_timeout


def expiring_notice_due(pause: Pause, now_ms: int, notify_before_ms: int) -> bool:
    """Whether ``run.pause_expiring`` is owed now: the pause is open, its expiry is at most
    ``notify_before_ms`` away and not yet passed (an expired pause gets its timeout, not a
    warning), and no notice was sent for this expiry. ``notify_before_ms`` ≤ 0: never."""
    return (
        notify_before_ms > 0
        and pause.is_open
        and pause.expires_at_ms - notify_before_ms <= now_ms < pause.expires_at_ms
        and pause.expiring_notified_for_ms != pause.expires_at_ms
    )


def expiring_notified(pause: Pause) -> Pause:
    """The pause with its current expiry's notice recorded as sent."""
    return replace(pause, expiring_notified_for_ms=pause.expires_at_ms)


def escalate(pause: Pause, now_ms: int, sla_ms: int) -> Pause:
    """The pause with a longer SLA, from ``now_ms``."""
    return replace(
        pause, escalations=pause.escalations + 1, expires_at_ms=now_ms + ESCALATION_FACTOR * sla_ms
    )


def close(pause: Pause, now_ms: int, *, actor: str, outcome: str) -> Pause:
    return replace(pause, ended_at_ms=now_ms, ended_by=actor, outcome=outcome)


def paused_ms(pauses: tuple[Pause, ...] | list[Pause], now_ms: int) -> int:
    """How long the run has spent paused: ended pauses in full, an open one until now.
    A liveness deadline moves by this much."""
    return sum(max(0, (p.ended_at_ms or now_ms) - p.paused_at_ms) for p in pauses)


def moved_deadline(deadline_ms: int, pauses: tuple[Pause, ...] | list[Pause], now_ms: int) -> int:
    """A run's liveness deadline, moved by the time it has spent paused: a run paused
    within its SLA is never stale, and one abandoned past it is — an open pause moves the
    deadline only up to its SLA expiry."""
    return deadline_ms + sum(
        max(0, (p.ended_at_ms or min(now_ms, p.expires_at_ms)) - p.paused_at_ms) for p in pauses
    )
