"""Reconciliation of the runtime audit contract: every rule of DESIGN invariant 5."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.audit import (
    COMPLETE_TRACE,
    CREATE_INCIDENT,
    EVALUATE_POLICY,
    FINALIZE_RUN,
    STANDARD_EXPECTATIONS,
    START_TRACE,
    AckStatus,
    ActionKey,
    AuditExpectation,
    DomainAck,
    ExpectationStatus,
    ReconciliationStatus,
    create_domain_ack,
    create_run_expectations,
    reconcile,
    rolled_back,
    settle_expectations,
)

RUN = "run_1"
T0 = 1_000_000
TIMEOUT = 60_000
GRACE = 5_000
DEADLINE = T0 + TIMEOUT + GRACE
BEFORE = DEADLINE - 1


def expectations() -> list[AuditExpectation]:
    return create_run_expectations(
        RUN, tenant_id="ten_1", run_timeout_ms=TIMEOUT, grace_period_ms=GRACE, now_ms=T0
    )


def ack(key: ActionKey, *, at: int = T0 + 10, status: AckStatus = AckStatus.SUCCESS) -> DomainAck:
    return create_domain_ack(RUN, *key, status=status, now_ms=at, tenant_id="ten_1")


def all_acks(at: int = T0 + 10) -> list[DomainAck]:
    return [ack(key, at=at + i) for i, key in enumerate(STANDARD_EXPECTATIONS)]


def test_standard_expectations_share_one_deadline() -> None:
    exps = expectations()
    assert [e.key() for e in exps] == list(STANDARD_EXPECTATIONS)
    assert {e.deadline_ms for e in exps} == {DEADLINE}
    assert {e.status for e in exps} == {ExpectationStatus.PENDING}
    assert len({e.id for e in exps}) == 5


def test_all_acked_is_complete_and_clean() -> None:
    result = reconcile(expectations(), all_acks(), now_ms=BEFORE)
    assert result.status is ReconciliationStatus.COMPLETE and result.is_clean()
    assert result.missing_actions == result.drift_actions == result.failed_actions == ()
    assert (result.expected_count, result.acked_count) == (5, 5)
    assert result.reconciled_at_ms == BEFORE and result.run_id == RUN


def test_a_missing_ack_is_missing() -> None:
    acks = [a for a in all_acks() if a.key() != EVALUATE_POLICY]
    result = reconcile(expectations(), acks, now_ms=BEFORE)
    assert result.status is ReconciliationStatus.INCOMPLETE and not result.is_clean()
    assert result.missing_actions == (EVALUATE_POLICY,)
    assert result.acked_count == 4


def test_a_duplicate_incident_ack_is_drift() -> None:
    acks = [*all_acks(), ack(CREATE_INCIDENT, at=T0 + 99)]
    result = reconcile(expectations(), acks, now_ms=BEFORE)
    assert result.status is ReconciliationStatus.INCOMPLETE
    assert result.drift_actions == (CREATE_INCIDENT,)
    assert result.missing_actions == ()


def test_drift_counts_every_extra_ack() -> None:
    acks = [*all_acks(), ack(CREATE_INCIDENT), ack(CREATE_INCIDENT), ack(("x", "y"))]
    result = reconcile(expectations(), acks, now_ms=BEFORE)
    assert result.drift_actions == (CREATE_INCIDENT, CREATE_INCIDENT, ("x", "y"))


def test_an_action_expected_twice_and_acked_once_is_missing_once() -> None:
    exps = [*expectations(), *expectations()[:1]]
    result = reconcile(exps, all_acks(), now_ms=BEFORE)
    assert result.missing_actions == (CREATE_INCIDENT,)
    assert result.expected_count == 6


def test_a_rolled_back_ack_is_missing_again() -> None:
    acks = all_acks()
    incident = next(a for a in acks if a.key() == CREATE_INCIDENT)
    undo = rolled_back(incident, "completion rolled back", T0 + 50)
    assert undo.is_rolled_back() and undo.rolled_back and not undo.is_success()
    assert undo.rolls_back_id == incident.id and undo.rollback_reason == "completion rolled back"
    result = reconcile(expectations(), [*acks, undo], now_ms=BEFORE)
    assert result.missing_actions == (CREATE_INCIDENT,)
    assert result.acked_count == 4
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_a_retry_after_a_rollback_counts_once() -> None:
    acks = all_acks()
    incident = next(a for a in acks if a.key() == CREATE_INCIDENT)
    retry = ack(CREATE_INCIDENT, at=T0 + 60)
    undo = rolled_back(incident, "rolled back", T0 + 50)
    result = reconcile(expectations(), [*acks, undo, retry], now_ms=BEFORE)
    assert result.is_clean(), result


def test_a_rollback_of_an_ack_that_never_committed_cancels_nothing() -> None:
    # Acks written inside the failed transaction vanish with it; only the ROLLED_BACK
    # record remains, and the retry's SUCCESS ack must still count.
    lost = ack(CREATE_INCIDENT, at=T0 + 5)
    undo = rolled_back(lost, "rolled back", T0 + 6)
    recording_twice = [undo, rolled_back(lost, "rolled back", T0 + 7)]
    result = reconcile(expectations(), [*all_acks(), *recording_twice], now_ms=BEFORE)
    assert result.is_clean(), result


def test_a_rollback_naming_no_ack_cancels_one_success_of_its_key() -> None:
    anonymous = DomainAck(
        "ack_x", RUN, *CREATE_INCIDENT, AckStatus.ROLLED_BACK, None, None, True, "r", T0 + 50
    )
    result = reconcile(expectations(), [*all_acks(), anonymous], now_ms=BEFORE)
    assert result.missing_actions == (CREATE_INCIDENT,)
    alone = reconcile(expectations(), [anonymous], now_ms=BEFORE)
    assert alone.acked_count == 0  # never below zero: no negative drift


def test_failed_acks_are_failed_and_also_missing() -> None:
    failed = ack(COMPLETE_TRACE, status=AckStatus.FAILED)
    acks = [a for a in all_acks() if a.key() != COMPLETE_TRACE] + [failed]
    result = reconcile(expectations(), acks, now_ms=BEFORE)
    assert result.failed_actions == (COMPLETE_TRACE,)
    assert result.missing_actions == (COMPLETE_TRACE,)
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_a_failure_stays_failed_after_a_later_success() -> None:
    acks = [*all_acks(), ack(START_TRACE, status=AckStatus.FAILED, at=T0)]
    result = reconcile(expectations(), acks, now_ms=BEFORE)
    assert result.failed_actions == (START_TRACE,) and result.missing_actions == ()
    assert not result.is_clean()


def test_stale_only_after_the_finalize_deadline() -> None:
    acks = [a for a in all_acks() if a.key() == START_TRACE]
    at_deadline = reconcile(expectations(), acks, now_ms=DEADLINE)
    assert not at_deadline.stale_run and at_deadline.status is ReconciliationStatus.INCOMPLETE
    after = reconcile(expectations(), acks, now_ms=DEADLINE + 1)
    assert after.stale_run and after.status is ReconciliationStatus.STALE
    assert set(after.missing_actions) == set(STANDARD_EXPECTATIONS) - {START_TRACE}


def test_not_stale_when_finalize_was_acked_even_after_the_deadline() -> None:
    acks = [a for a in all_acks() if a.key() != EVALUATE_POLICY]
    result = reconcile(expectations(), acks, now_ms=DEADLINE + 10_000)
    assert not result.stale_run and result.status is ReconciliationStatus.INCOMPLETE


def test_a_rolled_back_finalize_makes_the_run_stale_after_its_deadline() -> None:
    acks = all_acks()
    finalize = next(a for a in acks if a.key() == FINALIZE_RUN)
    result = reconcile(expectations(), [*acks, rolled_back(finalize, "r", T0)], now_ms=DEADLINE + 1)
    assert result.status is ReconciliationStatus.STALE


def test_an_expectation_without_deadline_is_invalid() -> None:
    exps = expectations()
    exps[1] = AuditExpectation("aex_x", RUN, *EVALUATE_POLICY, ExpectationStatus.PENDING, None, T0)
    result = reconcile(exps, all_acks(), now_ms=BEFORE)
    assert result.invalid == (EVALUATE_POLICY,)
    assert result.missing_actions == ()
    assert result.status is ReconciliationStatus.INCOMPLETE and not result.is_clean()


def test_a_finalize_without_deadline_is_invalid_never_stale() -> None:
    exps = [e for e in expectations() if e.key() != FINALIZE_RUN]
    exps.append(AuditExpectation("aex_f", RUN, *FINALIZE_RUN, ExpectationStatus.PENDING, None, T0))
    result = reconcile(exps, [], now_ms=DEADLINE * 10)
    assert result.invalid == (FINALIZE_RUN,) and not result.stale_run
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_stale_takes_precedence_over_everything() -> None:
    exps = expectations()
    exps[0] = AuditExpectation("aex_x", RUN, *CREATE_INCIDENT, ExpectationStatus.PENDING, None, T0)
    acks = [ack(START_TRACE), ack(START_TRACE), ack(EVALUATE_POLICY, status=AckStatus.FAILED)]
    result = reconcile(exps, acks, now_ms=DEADLINE + 1)
    assert result.drift_actions and result.failed_actions and result.invalid
    assert result.status is ReconciliationStatus.STALE


def test_settle_marks_acked_missing_and_failed() -> None:
    acks = [a for a in all_acks() if a.key() not in (EVALUATE_POLICY, COMPLETE_TRACE)]
    acks.append(ack(COMPLETE_TRACE, status=AckStatus.FAILED))
    settled = {e.key(): e for e in settle_expectations(expectations(), acks)}
    assert settled[START_TRACE].status is ExpectationStatus.ACKED
    assert settled[START_TRACE].acked_at_ms == next(
        a.created_at_ms for a in acks if a.key() == START_TRACE
    )
    assert settled[EVALUATE_POLICY].status is ExpectationStatus.MISSING
    assert settled[COMPLETE_TRACE].status is ExpectationStatus.FAILED
    assert settled[COMPLETE_TRACE].acked_at_ms is None


keys = st.sampled_from([*STANDARD_EXPECTATIONS, ("lessons", "derive"), ("x", "y")])


def _expect(run_keys: list[ActionKey]) -> list[AuditExpectation]:
    return [
        AuditExpectation(f"aex_{i}", RUN, d, a, ExpectationStatus.PENDING, DEADLINE, T0)
        for i, (d, a) in enumerate(run_keys)
    ]


@given(st.lists(keys, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_acks_equal_to_expectations_are_complete(
    run_keys: list[ActionKey], rnd: random.Random
) -> None:
    acked = list(run_keys)
    rnd.shuffle(acked)  # order never matters: multisets
    result = reconcile(_expect(run_keys), [ack(k) for k in acked], now_ms=BEFORE)
    assert result.status is ReconciliationStatus.COMPLETE and result.is_clean()
    assert result.acked_count == result.expected_count == len(run_keys)


@given(st.lists(keys, min_size=1, max_size=12), keys)
def test_any_extra_ack_is_drift(run_keys: list[ActionKey], extra: ActionKey) -> None:
    acks = [ack(k) for k in run_keys] + [ack(extra)]
    result = reconcile(_expect(run_keys), acks, now_ms=BEFORE)
    assert result.drift_actions == (extra,)
    assert result.status is ReconciliationStatus.INCOMPLETE and not result.is_clean()
