"""The run lifecycle against an independent statement of DESIGN.md's rules: every
(phase, status) pair and every pair of pairs, checked exhaustively."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.runs import (
    Phase,
    RunStatus,
    Transition,
    check_phase_status,
    check_transition,
    path,
    transition,
)
from runkernel.errors import IllegalTransitionError, PhaseStatusInvariantError

# DESIGN.md, "Run lifecycle", written out again by hand — deliberately not imported.
ORDER = ["CREATED", "AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "FINALIZING", "COMPLETED"]
ALLOWED = {
    "CREATED": {"queued"},
    "AUTHORIZED": {"queued"},
    "EXECUTING": {"running", "paused"},
    "GOVERNANCE_CHECK": {"running"},
    "FINALIZING": {"running"},
    "COMPLETED": {"succeeded"},
    "FAILED": {"failed", "failed_policy", "cancelled", "retry"},
}
TERMINAL = {"COMPLETED", "FAILED"}
PAIRS = [(p, s) for p in Phase for s in RunStatus]


def expected(fp: str, fs: str, tp: str, ts: str) -> type[Exception] | None:
    """What check_transition must do: None (allowed) or the exception it must raise."""
    if fs not in ALLOWED[fp] or ts not in ALLOWED[tp]:
        return PhaseStatusInvariantError
    if fp in TERMINAL:
        return IllegalTransitionError
    if tp == "FAILED":
        return None
    # Pause and resume, and nothing else, lead into and out of "paused" (DESIGN.md
    # "Mid-run governance"; issue 7): EXECUTING/running <-> EXECUTING/paused.
    if "paused" in (fs, ts):
        pause_or_resume = fp == tp == "EXECUTING" and {fs, ts} == {"running", "paused"}
        return None if pause_or_resume else IllegalTransitionError
    if tp == fp:
        return None
    if ORDER.index(tp) == ORDER.index(fp) + 1:
        return None
    return IllegalTransitionError


def outcome(fp: Phase, fs: RunStatus, tp: Phase, ts: RunStatus) -> type[Exception] | None:
    try:
        check_transition(fp, fs, tp, ts)
    except (PhaseStatusInvariantError, IllegalTransitionError) as exc:
        return type(exc)
    return None


def test_enums_are_exactly_the_design_vocabulary() -> None:
    assert {p.value for p in Phase} == set(ALLOWED)
    assert {s.value for s in RunStatus} == set().union(*ALLOWED.values())


@pytest.mark.parametrize(("phase", "status"), PAIRS, ids=lambda v: str(v))
def test_phase_status_table(phase: Phase, status: RunStatus) -> None:
    if status.value in ALLOWED[phase.value]:
        check_phase_status(phase, status)
    else:
        with pytest.raises(PhaseStatusInvariantError) as info:
            check_phase_status(phase, status)
        assert info.value.code == "phase_status_invariant"
        assert phase.value in str(info.value) and status.value in str(info.value)


def test_every_pair_of_states_is_judged_as_design_md_says() -> None:
    wrong = [
        (fp.value, fs.value, tp.value, ts.value, want, got)
        for (fp, fs), (tp, ts) in itertools.product(PAIRS, PAIRS)
        if (want := expected(fp.value, fs.value, tp.value, ts.value))
        is not (got := outcome(fp, fs, tp, ts))
    ]
    assert wrong == []


def test_the_legal_set_is_what_we_think_it_is() -> None:
    legal = {
        (fp.value, fs.value, tp.value, ts.value)
        for (fp, fs), (tp, ts) in itertools.product(PAIRS, PAIRS)
        if outcome(fp, fs, tp, ts) is None
    }
    # A few that must be there, and a few that must not.
    assert ("CREATED", "queued", "AUTHORIZED", "queued") in legal
    assert ("AUTHORIZED", "queued", "EXECUTING", "running") in legal
    assert ("EXECUTING", "running", "EXECUTING", "paused") in legal  # pause
    assert ("EXECUTING", "paused", "EXECUTING", "running") in legal  # resume, picked up
    assert ("EXECUTING", "paused", "FAILED", "failed_policy") in legal  # rejected, expired
    assert ("EXECUTING", "paused", "FAILED", "cancelled") in legal
    assert ("EXECUTING", "running", "EXECUTING", "running") in legal  # a takeover
    assert ("EXECUTING", "paused", "EXECUTING", "paused") not in legal
    assert ("AUTHORIZED", "queued", "EXECUTING", "paused") not in legal
    assert ("EXECUTING", "paused", "GOVERNANCE_CHECK", "running") not in legal  # not paused on
    assert ("FINALIZING", "running", "COMPLETED", "succeeded") in legal
    assert ("CREATED", "queued", "FAILED", "failed_policy") in legal
    assert ("GOVERNANCE_CHECK", "running", "FAILED", "cancelled") in legal
    assert ("CREATED", "queued", "EXECUTING", "running") not in legal  # skips a phase
    assert ("EXECUTING", "running", "AUTHORIZED", "queued") not in legal  # backwards
    assert ("EXECUTING", "running", "COMPLETED", "succeeded") not in legal
    assert ("COMPLETED", "succeeded", "FAILED", "failed") not in legal  # final is final
    assert ("FAILED", "retry", "FAILED", "failed") not in legal
    assert ("FAILED", "retry", "CREATED", "queued") not in legal
    # 5 non-terminal phases; count by the independent rules, then take out the three that
    # touch "paused" other than pause and resume: paused -> paused, paused -> one phase
    # on, and queued -> paused (a run pauses only once running).
    count = sum(
        1
        for fp, tp in itertools.product(ALLOWED, ALLOWED)
        if fp not in TERMINAL
        and (tp in (fp, "FAILED") or (tp in ORDER and ORDER.index(tp) == ORDER.index(fp) + 1))
        for _ in itertools.product(ALLOWED[fp], ALLOWED[tp])
    )
    assert len(legal) == count - 3


def test_creation_must_be_created_and_queued() -> None:
    t = transition(None, None, Phase.CREATED, RunStatus.QUEUED, at_ms=7, reason="submitted")
    assert t == Transition(None, None, Phase.CREATED, RunStatus.QUEUED, 7, "submitted")
    with pytest.raises(IllegalTransitionError):
        transition(None, None, Phase.AUTHORIZED, RunStatus.QUEUED, at_ms=7, reason="x")
    with pytest.raises(PhaseStatusInvariantError):
        transition(None, None, Phase.CREATED, RunStatus.RUNNING, at_ms=7, reason="x")


def test_path_builds_the_success_chain_and_refuses_a_skip() -> None:
    chain = path(
        (Phase.EXECUTING, RunStatus.RUNNING),
        (Phase.GOVERNANCE_CHECK, RunStatus.RUNNING, "steps done"),
        (Phase.FINALIZING, RunStatus.RUNNING, "checked"),
        (Phase.COMPLETED, RunStatus.SUCCEEDED, "completed"),
        at_ms=5,
    )
    assert [(t.from_phase, t.to_phase, t.to_status, t.reason) for t in chain] == [
        (Phase.EXECUTING, Phase.GOVERNANCE_CHECK, RunStatus.RUNNING, "steps done"),
        (Phase.GOVERNANCE_CHECK, Phase.FINALIZING, RunStatus.RUNNING, "checked"),
        (Phase.FINALIZING, Phase.COMPLETED, RunStatus.SUCCEEDED, "completed"),
    ]
    assert chain[0].to_dict() == {
        "from_phase": "EXECUTING",
        "from_status": "running",
        "to_phase": "GOVERNANCE_CHECK",
        "to_status": "running",
        "at_ms": 5,
        "reason": "steps done",
    }
    with pytest.raises(IllegalTransitionError):
        path(
            (Phase.EXECUTING, RunStatus.RUNNING),
            (Phase.FINALIZING, RunStatus.RUNNING, "skipped governance"),
            at_ms=5,
        )


@given(st.lists(st.sampled_from(PAIRS), min_size=1, max_size=8))
def test_path_accepts_a_walk_exactly_when_every_hop_is_legal(
    walk: list[tuple[Phase, RunStatus]],
) -> None:
    start = (Phase.CREATED, RunStatus.QUEUED)
    hops = list(zip([start, *walk], walk, strict=False))
    all_legal = all(expected(f[0], f[1], t[0], t[1]) is None for f, t in hops)
    steps = [(p, s, f"to {p}/{s}") for p, s in walk]
    if all_legal:
        chain = path(start, *steps, at_ms=1)
        assert [(t.to_phase, t.to_status) for t in chain] == walk
    else:
        with pytest.raises((PhaseStatusInvariantError, IllegalTransitionError)):
            path(start, *steps, at_ms=1)
