"""One contract for every audit store: memory, SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import secrets
import threading

from runkernel.domain.audit import (
    CREATE_INCIDENT,
    FINALIZE_RUN,
    STANDARD_EXPECTATIONS,
    START_TRACE,
    AckStatus,
    AuditExpectation,
    DomainAck,
    ExpectationStatus,
    ReconciliationResult,
    ReconciliationStatus,
    create_domain_ack,
    create_run_expectations,
    reconcile,
    rolled_back,
)
from runkernel.services.ports import AuditStore

T0 = 1_000_000
TIMEOUT, GRACE = 60_000, 5_000
DEADLINE = T0 + TIMEOUT + GRACE


def new_run(store: AuditStore, *, now: int = T0, tenant: str = "ten_a") -> str:
    run_id = f"run_{secrets.token_hex(8)}"
    store.add_expectations(
        create_run_expectations(
            run_id, tenant_id=tenant, run_timeout_ms=TIMEOUT, grace_period_ms=GRACE, now_ms=now
        )
    )
    return run_id


def ack_all(store: AuditStore, run_id: str, *, skip: tuple[str, str] | None = None) -> None:
    for i, key in enumerate(STANDARD_EXPECTATIONS):
        if key != skip:
            store.add_ack(create_domain_ack(run_id, *key, tenant_id="ten_a", now_ms=T0 + 10 + i))


def test_expectations_come_back_as_written(audit_store: AuditStore) -> None:
    run_id = f"run_{secrets.token_hex(8)}"
    written = create_run_expectations(
        run_id, tenant_id="ten_a", run_timeout_ms=TIMEOUT, grace_period_ms=GRACE, now_ms=T0
    )
    audit_store.add_expectations(written)
    other = new_run(audit_store)
    assert audit_store.expectations(run_id) == sorted(written, key=lambda e: e.id)
    assert len(audit_store.expectations(other)) == 5
    assert audit_store.expectations("run_unknown") == []


def test_acks_are_appended_never_merged(audit_store: AuditStore) -> None:
    run_id = new_run(audit_store)
    first = create_domain_ack(
        run_id, *CREATE_INCIDENT, result_id="inc_1", now_ms=T0 + 1, metadata={"n": [1, 2.5]}
    )
    dup = create_domain_ack(run_id, *CREATE_INCIDENT, result_id="inc_2", now_ms=T0 + 2)
    failed = create_domain_ack(
        run_id, *START_TRACE, status=AckStatus.FAILED, error="sink down", now_ms=T0 + 3
    )
    undo = rolled_back(first, "tx failed", T0 + 4)
    for ack in (first, dup, failed, undo):
        audit_store.add_ack(ack)
    assert audit_store.acks(run_id) == [first, dup, failed, undo]
    assert audit_store.acks("run_unknown") == []


def test_adding_the_same_ack_twice_stores_it_once(audit_store: AuditStore) -> None:
    # A forwarder that crashed between writing an ack and marking it sends it again.
    run_id = new_run(audit_store)
    first = create_domain_ack(run_id, *START_TRACE, now_ms=T0 + 1)
    second = create_domain_ack(run_id, *FINALIZE_RUN, now_ms=T0 + 2)
    for ack in (first, first, second, first, second):
        audit_store.add_ack(ack)
    assert audit_store.acks(run_id) == [first, second]


def test_concurrent_appends_lose_nothing(audit_store: AuditStore) -> None:
    run_id = new_run(audit_store)
    threads, per_thread = 6, 15

    def write(n: int) -> None:
        for i in range(per_thread):
            audit_store.add_ack(create_domain_ack(run_id, "d", f"a{n}_{i}", now_ms=T0 + i))

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    actions = {ack.action for ack in audit_store.acks(run_id)}
    assert len(actions) == threads * per_thread


def test_pending_runs_are_those_past_their_finalize_deadline(audit_store: AuditStore) -> None:
    early = new_run(audit_store, now=T0)
    late = new_run(audit_store, now=T0 + 1_000)
    not_due = new_run(audit_store, now=T0 + 500_000)
    assert audit_store.get_pending_run_ids(DEADLINE) == []  # due means strictly after
    assert audit_store.get_pending_run_ids(DEADLINE + 1) == [early]
    now = DEADLINE + 2_000
    assert audit_store.get_pending_run_ids(now) == [early, late]
    assert audit_store.get_pending_run_ids(now, limit=1) == [early]
    assert not_due not in audit_store.get_pending_run_ids(now)


def test_a_finalize_acked_run_is_still_pending_until_reconciled(audit_store: AuditStore) -> None:
    run_id = new_run(audit_store)
    ack_all(audit_store, run_id)
    assert audit_store.get_pending_run_ids(DEADLINE + 1) == [run_id]


def test_saving_a_result_once(audit_store: AuditStore) -> None:
    run_id = new_run(audit_store)
    ack_all(audit_store, run_id, skip=FINALIZE_RUN)
    now = DEADLINE + 1
    result = reconcile(audit_store.expectations(run_id), audit_store.acks(run_id), now_ms=now)
    assert result.status is ReconciliationStatus.STALE

    assert audit_store.save_reconciliation(result, "ten_a") is True
    assert audit_store.reconciliation(run_id) == result
    assert audit_store.get_pending_run_ids(now + 1) == []

    later = reconcile([], [create_domain_ack(run_id, "d", "a", now_ms=now)], now_ms=now + 5)
    assert audit_store.save_reconciliation(later, "ten_a") is False  # the first one stays
    assert audit_store.reconciliation(run_id) == result
    assert audit_store.save_reconciliation(later, "ten_a", replace=True) is True
    assert audit_store.reconciliation(run_id) == later
    assert audit_store.reconciliation("run_unknown") is None


def test_saving_a_result_settles_the_expectations(audit_store: AuditStore) -> None:
    run_id = new_run(audit_store)
    ack_all(audit_store, run_id, skip=FINALIZE_RUN)
    audit_store.add_ack(
        create_domain_ack(run_id, *FINALIZE_RUN, status=AckStatus.FAILED, now_ms=T0 + 90)
    )
    incident = next(a for a in audit_store.acks(run_id) if a.key() == CREATE_INCIDENT)
    audit_store.add_ack(rolled_back(incident, "tx failed", T0 + 95))
    assert {e.status for e in audit_store.expectations(run_id)} == {ExpectationStatus.PENDING}

    result = reconcile(
        audit_store.expectations(run_id), audit_store.acks(run_id), now_ms=DEADLINE + 1
    )
    audit_store.save_reconciliation(result, "ten_a")
    settled = {e.key(): e for e in audit_store.expectations(run_id)}
    assert settled[CREATE_INCIDENT].status is ExpectationStatus.MISSING
    assert settled[FINALIZE_RUN].status is ExpectationStatus.FAILED
    assert settled[START_TRACE].status is ExpectationStatus.ACKED
    assert settled[START_TRACE].acked_at_ms == T0 + 10 + STANDARD_EXPECTATIONS.index(START_TRACE)


def _result(run_id: str, status: ReconciliationStatus, at: int) -> ReconciliationResult:
    return ReconciliationResult(run_id, status, (), (), (), False, (), at, 5, 5)


def test_listing_results_newest_first_by_status_and_tenant(audit_store: AuditStore) -> None:
    saved = [
        ("run_1", ReconciliationStatus.STALE, 10, "ten_a"),
        ("run_2", ReconciliationStatus.COMPLETE, 20, "ten_a"),
        ("run_3", ReconciliationStatus.STALE, 30, "ten_b"),
        ("run_4", ReconciliationStatus.INCOMPLETE, 40, None),
    ]
    for run_id, status, at, tenant in saved:
        assert audit_store.save_reconciliation(_result(run_id, status, at), tenant)

    def ids(**query: object) -> list[str]:
        return [r.run_id for r in audit_store.reconciliations(**query)]  # type: ignore[arg-type]

    assert ids() == ["run_4", "run_3", "run_2", "run_1"]
    assert ids(limit=2) == ["run_4", "run_3"]
    assert ids(status=ReconciliationStatus.STALE) == ["run_3", "run_1"]
    assert ids(tenant_id="ten_a") == ["run_2", "run_1"]
    assert ids(tenant_id="ten_a", status=ReconciliationStatus.STALE) == ["run_1"]
    assert ids(tenant_id="ten_c") == []

    # Replacing a result moves it between the status lists.
    assert audit_store.save_reconciliation(
        _result("run_1", ReconciliationStatus.COMPLETE, 50), "ten_a", replace=True
    )
    assert ids(status=ReconciliationStatus.STALE) == ["run_3"]
    assert ids(tenant_id="ten_a", status=ReconciliationStatus.COMPLETE) == ["run_1", "run_2"]


def test_clear_run_forgets_one_run(audit_store: AuditStore) -> None:
    run_id, kept = new_run(audit_store), new_run(audit_store)
    for run in (run_id, kept):
        ack_all(audit_store, run)
    audit_store.save_reconciliation(_result(run_id, ReconciliationStatus.STALE, 7), "ten_a")
    audit_store.clear_run(run_id)
    assert audit_store.expectations(run_id) == []
    assert audit_store.acks(run_id) == []
    assert audit_store.reconciliation(run_id) is None
    assert audit_store.reconciliations() == []
    assert audit_store.get_pending_run_ids(DEADLINE + 1) == [kept]
    assert len(audit_store.acks(kept)) == 5


def test_records_keep_every_field(audit_store: AuditStore) -> None:
    exp = AuditExpectation(
        "aex_1", "run_f", "d", "a", ExpectationStatus.PENDING, None, 5, None, {"k": {"n": 1}}, None
    )
    ack = DomainAck(
        "ack_1", "run_f", "d", "a", AckStatus.FAILED, "res", "boom", False, None, 6, {}, "ten_z"
    )
    audit_store.add_expectations([exp])
    audit_store.add_ack(ack)
    assert audit_store.expectations("run_f") == [exp]
    assert audit_store.acks("run_f") == [ack]
    assert audit_store.get_pending_run_ids(10**15) == []  # no finalize expectation
