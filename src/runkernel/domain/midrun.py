"""The check before every step (issue 7, DESIGN "Mid-run governance"): what was found, and
what it decides.

Mapping of :func:`decide` (one place):

===================  ===========  ==================================================
violation            decision     the run
===================  ===========  ==================================================
BUDGET_EXCEEDED      TERMINATE    ends failed_policy / ``budget_exceeded``
MANUAL_STOP          TERMINATE    ends cancelled / ``cancelled``
TENANT_SUSPENDED     TERMINATE    ends failed_policy / ``tenant_suspended``
LIMIT_CHANGED        PAUSE        POLICY_CHANGE pause
POLICY_DISABLED      PAUSE        POLICY_CHANGE pause
APPROVAL_REQUIRED    PAUSE        APPROVAL_REQUIRED pause
(none)               CONTINUE
===================  ===========  ==================================================

TERMINATE wins over PAUSE: a run that must end is not parked first. Among terminating
violations a manual stop decides the status (the tenant asked), then a suspension, then
the budget. A checker that cannot decide fails closed (:func:`failed_closed`: PAUSE);
disabled checks are SKIP.

Pure: time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from runkernel.domain.pauses import PauseReason
from runkernel.domain.records import RunBudget
from runkernel.domain.skills import Usage


class CheckDecision(StrEnum):
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    TERMINATE = "TERMINATE"
    SKIP = "SKIP"


class ViolationType(StrEnum):
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    LIMIT_CHANGED = "LIMIT_CHANGED"
    POLICY_DISABLED = "POLICY_DISABLED"
    MANUAL_STOP = "MANUAL_STOP"
    TENANT_SUSPENDED = "TENANT_SUSPENDED"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"


_V = ViolationType
TERMINATING = (_V.MANUAL_STOP, _V.TENANT_SUSPENDED, _V.BUDGET_EXCEEDED)  # by precedence
PAUSING = (_V.APPROVAL_REQUIRED, _V.LIMIT_CHANGED, _V.POLICY_DISABLED)

# The error code a terminated run ends with, per terminating violation.
ERROR_CODES = {
    _V.MANUAL_STOP: "cancelled",
    _V.TENANT_SUSPENDED: "tenant_suspended",
    _V.BUDGET_EXCEEDED: "budget_exceeded",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation found, with what it is about (a rule id, a limit)."""

    type: ViolationType
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class PolicyCheckResult:
    decision: CheckDecision
    reason: str
    violations: tuple[Finding, ...]
    checked_at_ms: int
    duration_ms: float
    step_index: int

    @property
    def types(self) -> tuple[ViolationType, ...]:
        return tuple(dict.fromkeys(f.type for f in self.violations))

    @property
    def deciding(self) -> ViolationType | None:
        """The violation that decided a TERMINATE or PAUSE (see the module doc)."""
        order = TERMINATING if self.decision is CheckDecision.TERMINATE else PAUSING
        return next((t for t in order if t in self.types), None)

    @property
    def error_code(self) -> str:
        """The code a TERMINATE ends the run with."""
        deciding = self.deciding
        return "policy_check" if deciding is None else ERROR_CODES[deciding]

    @property
    def pause_reason(self) -> PauseReason:
        """The pause a PAUSE opens: an approval, or a policy change (a checker error too)."""
        if self.deciding is _V.APPROVAL_REQUIRED:
            return PauseReason.APPROVAL_REQUIRED
        return PauseReason.POLICY_CHANGE

    def to_dict(self) -> dict[str, object]:
        return {
            "decision": self.decision.value,
            "reason": self.reason,
            "violations": [f.to_dict() for f in self.violations],
            "checked_at_ms": self.checked_at_ms,
            "duration_ms": self.duration_ms,
            "step_index": self.step_index,
        }


def decide(findings: Iterable[Finding]) -> tuple[CheckDecision, str]:
    """The decision the findings make, and its reason (their messages)."""
    found = tuple(findings)
    types = {f.type for f in found}
    if types & set(TERMINATING):
        decision, kept = CheckDecision.TERMINATE, [f for f in found if f.type in TERMINATING]
    elif found:
        decision, kept = CheckDecision.PAUSE, list(found)
    else:
        return CheckDecision.CONTINUE, "no violation"
    return decision, "; ".join(f.message for f in kept)


def result(
    findings: Sequence[Finding], *, step_index: int, checked_at_ms: int, duration_ms: float
) -> PolicyCheckResult:
    decision, reason = decide(findings)
    return PolicyCheckResult(
        decision, reason, tuple(findings), checked_at_ms, duration_ms, step_index
    )


def failed_closed(
    error: BaseException, *, step_index: int, checked_at_ms: int, duration_ms: float
) -> PolicyCheckResult:
    """A checker that could not decide pauses the run (never lets it go on unchecked)."""
    reason = f"the policy check failed: {type(error).__name__}: {error}"
    return PolicyCheckResult(
        CheckDecision.PAUSE, reason, (), checked_at_ms, duration_ms, step_index
    )


def skipped(*, step_index: int, checked_at_ms: int) -> PolicyCheckResult:
    return PolicyCheckResult(
        CheckDecision.SKIP, "mid-run checks are disabled", (), checked_at_ms, 0.0, step_index
    )


def active_ms(started_at_ms: int, now_ms: int, paused_ms: int) -> int:
    """How long a run has been running: wall time since its start less the time it spent
    paused (the same fact ``domain.pauses.paused_ms`` moves its liveness deadline by)."""
    return max(0, now_ms - started_at_ms - paused_ms)


def budget_exceeded(
    budget: RunBudget, cost_micros: int, usage: Usage, steps_done: int, active_ms: int
) -> str | None:
    """Why the run may not start another step, or None. ``active_ms`` excludes pauses."""
    if budget.max_cost_micros is not None and cost_micros >= budget.max_cost_micros:
        return f"cost {cost_micros} micros reached the limit of {budget.max_cost_micros}"
    if budget.max_tokens is not None and usage.total_tokens >= budget.max_tokens:
        return f"{usage.total_tokens} tokens reached the limit of {budget.max_tokens}"
    if budget.max_steps is not None and steps_done >= budget.max_steps:
        return f"{steps_done} steps reached the limit of {budget.max_steps}"
    if budget.timeout_s is not None and active_ms >= budget.timeout_s * 1000:
        return f"run time {active_ms} ms reached the timeout of {budget.timeout_s} s"
    return None
