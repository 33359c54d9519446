"""What a claim does to a run — the one place that decides it.

SQL finds, locks and claims the runs (``adapters/db/claims.py``); this module decides,
from the state each was claimed in, the transition the claim makes, the reason it is
recorded with, and whether it counts an attempt. The adapter stores what it decides.

``attempt`` counts how often a run was (re)started: its first claim, and each takeover of
a lease its worker let expire (a crash recovery). A claim that is neither — a paused run
resumed and picked up again — moves the fencing token (the claim epoch) but counts no
attempt.
"""

from __future__ import annotations

from enum import StrEnum

from runkernel.domain.runs import Phase, RunStatus, Transition, transition
from runkernel.errors import IllegalTransitionError


class ClaimKind(StrEnum):
    FIRST = "first"  # the run starts
    TAKEOVER = "takeover"  # its lease expired: the worker that held it died
    RESUME = "resume"  # it was paused, and its resume was granted

    @property
    def counts_attempt(self) -> bool:
        return self in (ClaimKind.FIRST, ClaimKind.TAKEOVER)


# Every claim leaves the run executing, held by the claiming worker.
CLAIMED = (Phase.EXECUTING, RunStatus.RUNNING)

# The states a run can be claimed from, and what kind of claim that is.
CLAIMABLE: dict[tuple[Phase, RunStatus], ClaimKind] = {
    (Phase.AUTHORIZED, RunStatus.QUEUED): ClaimKind.FIRST,
    (Phase.EXECUTING, RunStatus.RUNNING): ClaimKind.TAKEOVER,
    (Phase.EXECUTING, RunStatus.PAUSED): ClaimKind.RESUME,
}

# The statuses whose claims count an attempt (what the claiming UPDATE needs to know).
ATTEMPT_COUNTING_STATUSES = frozenset(
    status for (_, status), kind in CLAIMABLE.items() if kind.counts_attempt
)


def claim_kind(phase: Phase, status: RunStatus) -> ClaimKind:
    try:
        return CLAIMABLE[(phase, status)]
    except KeyError:
        raise IllegalTransitionError(
            f"a run in {phase.value}/{status.value} cannot be claimed"
        ) from None


def claim_transition(
    from_phase: Phase, from_status: RunStatus, *, worker_id: str, attempt: int, at_ms: int
) -> Transition:
    """The checked transition of a claim of a run found in ``from_phase``/``from_status``;
    ``attempt`` is the run's attempt once claimed."""
    kind = claim_kind(from_phase, from_status)
    if kind is ClaimKind.FIRST:
        reason = f"claimed by {worker_id} (attempt {attempt})"
    elif kind is ClaimKind.RESUME:
        reason = f"resumed; claimed by {worker_id} (attempt {attempt})"
    else:
        reason = f"lease expired; reclaimed by {worker_id} (attempt {attempt})"
    return transition(from_phase, from_status, *CLAIMED, at_ms=at_ms, reason=reason)
