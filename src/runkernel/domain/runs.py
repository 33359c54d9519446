"""The run lifecycle: phases, statuses and the rules that bind them.

The kernel is the only authority over a run's lifecycle; every change goes through
:func:`check_transition`, so a stored run can never hold a status its phase forbids.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runkernel.errors import IllegalTransitionError, PhaseStatusInvariantError


class Phase(StrEnum):
    CREATED = "CREATED"
    AUTHORIZED = "AUTHORIZED"
    EXECUTING = "EXECUTING"
    GOVERNANCE_CHECK = "GOVERNANCE_CHECK"
    FINALIZING = "FINALIZING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FAILED_POLICY = "failed_policy"
    CANCELLED = "cancelled"
    RETRY = "retry"


PHASE_ORDER: tuple[Phase, ...] = (
    Phase.CREATED,
    Phase.AUTHORIZED,
    Phase.EXECUTING,
    Phase.GOVERNANCE_CHECK,
    Phase.FINALIZING,
    Phase.COMPLETED,
)

ALLOWED_STATUSES: dict[Phase, frozenset[RunStatus]] = {
    Phase.CREATED: frozenset({RunStatus.QUEUED}),
    Phase.AUTHORIZED: frozenset({RunStatus.QUEUED}),
    Phase.EXECUTING: frozenset({RunStatus.RUNNING, RunStatus.PAUSED}),
    Phase.GOVERNANCE_CHECK: frozenset({RunStatus.RUNNING}),
    Phase.FINALIZING: frozenset({RunStatus.RUNNING}),
    Phase.COMPLETED: frozenset({RunStatus.SUCCEEDED}),
    Phase.FAILED: frozenset(
        {RunStatus.FAILED, RunStatus.FAILED_POLICY, RunStatus.CANCELLED, RunStatus.RETRY}
    ),
}

TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED})


def is_terminal(phase: Phase) -> bool:
    return phase in TERMINAL_PHASES


def check_phase_status(phase: Phase, status: RunStatus) -> None:
    """Raise ``PhaseStatusInvariantError`` unless ``status`` is allowed in ``phase``."""
    if status not in ALLOWED_STATUSES[phase]:
        allowed = ", ".join(sorted(ALLOWED_STATUSES[phase]))
        raise PhaseStatusInvariantError(
            f"status {status.value!r} is not allowed in phase {phase.value} (allowed: {allowed})"
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded change of a run's (phase, status), with when and why."""

    from_phase: Phase | None
    from_status: RunStatus | None
    to_phase: Phase
    to_status: RunStatus
    at_ms: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "from_phase": self.from_phase.value if self.from_phase else None,
            "from_status": self.from_status.value if self.from_status else None,
            "to_phase": self.to_phase.value,
            "to_status": self.to_status.value,
            "at_ms": self.at_ms,
            "reason": self.reason,
        }


# The only ways into and out of a pause, besides failing: a running run pauses, and a
# paused one runs again when a worker picks the resumed run up.
PAUSE = ((Phase.EXECUTING, RunStatus.RUNNING), (Phase.EXECUTING, RunStatus.PAUSED))
RESUME = ((Phase.EXECUTING, RunStatus.PAUSED), (Phase.EXECUTING, RunStatus.RUNNING))


def check_transition(
    from_phase: Phase, from_status: RunStatus, to_phase: Phase, to_status: RunStatus
) -> None:
    """Allow only: a move to FAILED from any non-terminal state; a pause or a resume
    (nothing else leaves or enters ``paused``); a status change within a non-terminal
    phase, or one phase step forward; and only statuses the phase allows."""
    check_phase_status(from_phase, from_status)
    check_phase_status(to_phase, to_status)
    if is_terminal(from_phase):
        raise IllegalTransitionError(f"run is already final ({from_phase.value})")
    if to_phase is Phase.FAILED:
        return
    if RunStatus.PAUSED in (from_status, to_status):
        if ((from_phase, from_status), (to_phase, to_status)) not in (PAUSE, RESUME):
            raise IllegalTransitionError(
                f"illegal transition {from_phase.value}/{from_status.value} -> "
                f"{to_phase.value}/{to_status.value}: a run pauses from running and "
                "resumes to running, or fails"
            )
        return
    if to_phase is from_phase:
        return
    step = PHASE_ORDER.index(to_phase) - PHASE_ORDER.index(from_phase)
    if step != 1:
        raise IllegalTransitionError(
            f"illegal phase transition {from_phase.value} -> {to_phase.value}: "
            "a run moves one phase forward or to FAILED"
        )


def transition(
    from_phase: Phase | None,
    from_status: RunStatus | None,
    to_phase: Phase,
    to_status: RunStatus,
    *,
    at_ms: int,
    reason: str,
) -> Transition:
    """Check and build a :class:`Transition`; ``from_phase=None`` is the run's creation."""
    if from_phase is None or from_status is None:
        if to_phase is not Phase.CREATED:
            raise IllegalTransitionError("a run is created in phase CREATED")
        check_phase_status(to_phase, to_status)
    else:
        check_transition(from_phase, from_status, to_phase, to_status)
    return Transition(from_phase, from_status, to_phase, to_status, at_ms, reason)


def path(
    start: tuple[Phase, RunStatus],
    *steps: tuple[Phase, RunStatus, str],
    at_ms: int,
) -> list[Transition]:
    """Build a checked chain of transitions from ``start`` through ``steps``."""
    out: list[Transition] = []
    phase, status = start
    for to_phase, to_status, reason in steps:
        out.append(transition(phase, status, to_phase, to_status, at_ms=at_ms, reason=reason))
        phase, status = to_phase, to_status
    return out
