"""What a claim does to a run, as the domain decides it: from which states, to which,
with which reason, and which claims count an attempt."""

from __future__ import annotations

import itertools

import pytest

from runkernel.domain.claims import (
    ATTEMPT_COUNTING_STATUSES,
    CLAIMED,
    ClaimKind,
    claim_kind,
    claim_transition,
)
from runkernel.domain.runs import Phase, RunStatus, Transition
from runkernel.errors import IllegalTransitionError


def test_a_first_claim_starts_the_run_as_attempt_one() -> None:
    t = claim_transition(Phase.AUTHORIZED, RunStatus.QUEUED, worker_id="w1", attempt=1, at_ms=9)
    assert t == Transition(
        Phase.AUTHORIZED,
        RunStatus.QUEUED,
        Phase.EXECUTING,
        RunStatus.RUNNING,
        9,
        "claimed by w1 (attempt 1)",
    )


def test_a_takeover_keeps_the_run_executing_and_names_the_new_attempt() -> None:
    t = claim_transition(Phase.EXECUTING, RunStatus.RUNNING, worker_id="w2", attempt=3, at_ms=9)
    assert (t.from_phase, t.from_status, t.to_phase, t.to_status, t.reason) == (
        Phase.EXECUTING,
        RunStatus.RUNNING,
        Phase.EXECUTING,
        RunStatus.RUNNING,
        "lease expired; reclaimed by w2 (attempt 3)",
    )


def test_a_resumed_pause_runs_again_without_a_new_attempt() -> None:
    t = claim_transition(Phase.EXECUTING, RunStatus.PAUSED, worker_id="w3", attempt=1, at_ms=9)
    assert (t.from_status, t.to_phase, t.to_status, t.reason) == (
        RunStatus.PAUSED,
        Phase.EXECUTING,
        RunStatus.RUNNING,
        "resumed; claimed by w3 (attempt 1)",
    )
    assert not ClaimKind.RESUME.counts_attempt


def test_only_first_claims_and_takeovers_count_an_attempt() -> None:
    assert CLAIMED == (Phase.EXECUTING, RunStatus.RUNNING)
    assert claim_kind(Phase.AUTHORIZED, RunStatus.QUEUED) is ClaimKind.FIRST
    assert claim_kind(Phase.EXECUTING, RunStatus.RUNNING) is ClaimKind.TAKEOVER
    assert claim_kind(Phase.EXECUTING, RunStatus.PAUSED) is ClaimKind.RESUME
    assert [k for k in ClaimKind if k.counts_attempt] == [ClaimKind.FIRST, ClaimKind.TAKEOVER]
    assert set(ATTEMPT_COUNTING_STATUSES) == {RunStatus.QUEUED, RunStatus.RUNNING}


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (p, s)
        for p, s in itertools.product(Phase, RunStatus)
        if (p, s)
        not in {
            (Phase.AUTHORIZED, RunStatus.QUEUED),
            (Phase.EXECUTING, RunStatus.RUNNING),
            (Phase.EXECUTING, RunStatus.PAUSED),
        }
    ],
    ids=str,
)
def test_no_other_state_can_be_claimed(phase: Phase, status: RunStatus) -> None:
    with pytest.raises(IllegalTransitionError):
        claim_transition(phase, status, worker_id="w", attempt=1, at_ms=1)
