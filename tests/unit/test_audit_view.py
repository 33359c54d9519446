"""``expectations_now``: each expectation as the audit view shows it, from the acks alone,
so it always agrees with the live verdict — ACKED the moment its ack exists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.audit import (
    CREATE_INCIDENT,
    STANDARD_EXPECTATIONS,
    START_TRACE,
    AckStatus,
    ActionKey,
    DomainAck,
    ExpectationStatus,
    create_domain_ack,
    create_run_expectations,
    expectations_now,
    reconcile,
    rolled_back,
    settle_expectations,
)

RUN, T0 = "run_1", 1_000_000
DEADLINE = T0 + 60_000
EXPECTED = create_run_expectations(
    RUN, tenant_id="ten_1", run_timeout_ms=60_000, grace_period_ms=0, now_ms=T0
)
ACKED, PENDING = ExpectationStatus.ACKED, ExpectationStatus.PENDING
MISSING = ExpectationStatus.MISSING


def ack(key: ActionKey, *, at: int = T0 + 10, status: AckStatus = AckStatus.SUCCESS) -> DomainAck:
    return create_domain_ack(RUN, *key, status=status, now_ms=at, tenant_id="ten_1")


def shown(acks: list[DomainAck], now_ms: int) -> dict[ActionKey, tuple[str, int | None]]:
    view = expectations_now(EXPECTED, acks, now_ms=now_ms)
    return {e.key(): (e.status.value, e.acked_at_ms) for e in view}


def test_an_ack_shows_its_expectation_acked_at_once_with_its_time() -> None:
    view = shown([ack(START_TRACE, at=T0 + 7)], T0 + 8)
    assert view.pop(START_TRACE) == ("ACKED", T0 + 7)
    assert set(view.values()) == {("PENDING", None)}


def test_unacked_expectations_are_pending_until_the_deadline_then_missing() -> None:
    assert {s for s, _ in shown([], DEADLINE).values()} == {"PENDING"}  # due at, not past
    assert {s for s, _ in shown([], DEADLINE + 1).values()} == {"MISSING"}


def test_a_failed_ack_shows_failed_and_a_rollback_undoes_an_ack() -> None:
    failed = ack(CREATE_INCIDENT, status=AckStatus.FAILED)
    done = ack(START_TRACE)
    view = shown([failed, done, rolled_back(done, "completion rolled back", T0 + 20)], T0 + 30)
    assert view[CREATE_INCIDENT] == ("FAILED", None)
    assert view[START_TRACE] == ("PENDING", None)


def test_what_a_sweep_stored_does_not_hide_a_later_ack() -> None:
    swept = settle_expectations(EXPECTED, [])  # all MISSING, as the sweep stored them
    assert {e.status for e in swept} == {MISSING}
    late = [ack(key, at=DEADLINE + 100 + i) for i, key in enumerate(STANDARD_EXPECTATIONS)]
    view = expectations_now(swept, late, now_ms=DEADLINE + 200)
    assert {e.status for e in view} == {ACKED}
    assert [e.acked_at_ms for e in view] == [a.created_at_ms for a in late]


@given(acked=st.sets(st.sampled_from(STANDARD_EXPECTATIONS)), past_deadline=st.booleans())
def test_the_view_agrees_with_the_live_verdict(acked: set[ActionKey], past_deadline: bool) -> None:
    now = DEADLINE + 1 if past_deadline else DEADLINE - 1
    acks = [ack(key, at=T0 + i) for i, key in enumerate(sorted(acked))]
    view = expectations_now(EXPECTED, acks, now_ms=now)
    result = reconcile(EXPECTED, acks, now_ms=now)
    assert [e.id for e in view] == [e.id for e in EXPECTED]
    assert {e.key() for e in view if e.status is ACKED} == acked
    assert {e.key() for e in view if e.status is not ACKED} == set(result.missing_actions)
    waiting = {e.status for e in view if e.status is not ACKED}
    assert waiting <= ({MISSING} if past_deadline else {PENDING})
