"""The transactional outbox on SQLite and PostgreSQL: events exist exactly when their
transaction committed, are published in order per run, and a claim that a relay holds
(or held and let expire) decides who publishes what."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runkernel.adapters.bus import InProcessBus
from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.adapters.db.outbox import SqlOutboxRepository
from runkernel.adapters.db.unit_of_work import SqlUnitOfWork
from runkernel.domain.events import Event, new_event
from runkernel.entrypoints.relay import RelayRunner
from runkernel.services.ports import SystemClock
from runkernel.services.relay import Relay
from support.relay_process import BusLog, FakeClock, add_events, outbox_rows, relay_for, repo
from support.workers import wait_until

LEASE_MS = 10_000


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def _events(run_id: str | None, n: int, topic: str = "run.step.completed") -> list[Event]:
    return [
        new_event(topic, tenant_id="t1", run_id=run_id, payload={"run": run_id, "i": i}, now_ms=i)
        for i in range(n)
    ]


def test_events_of_a_rolled_back_transaction_are_never_published(db: Database) -> None:
    lost = _events("r1", 3)
    with pytest.raises(RuntimeError), SqlUnitOfWork(db) as uow:
        SqlOutboxRepository(uow.connection, db.dialect).add(lost)
        raise RuntimeError("the completion failed after writing its events")
    kept = _events("r2", 2)
    add_events(db, kept)

    bus, log = BusLog.on(InProcessBus())
    relay = relay_for(db, bus, FakeClock(), "relay-a")
    assert relay.relay_once() == 2
    assert relay.relay_once() == 0
    assert log.ids() == [e.id for e in kept]
    assert [r.id for r in outbox_rows(db)] == [e.id for e in kept]


def test_committed_events_are_published_once_in_seq_order(db: Database) -> None:
    r1, r2, system = _events("r1", 4), _events("r2", 3), _events(None, 2, "reactor.heartbeat")
    written = [r1[0], r2[0], system[0], r1[1], r1[2], r2[1], system[1], r2[2], r1[3]]
    for start in range(0, len(written), 2):  # several transactions, several events each
        add_events(db, written[start : start + 2])

    bus, log = BusLog.on(InProcessBus())
    clock = FakeClock()
    relay = relay_for(db, bus, clock, "relay-a", batch=4)
    assert [relay.relay_once() for _ in range(4)] == [4, 4, 1, 0]
    assert log.events == written  # equal envelopes: payloads survived the JSON column
    rows = outbox_rows(db)
    assert [(r.claimed_by, r.published_at_ms) for r in rows] == [("relay-a", clock.now)] * 9
    assert relay.pending() == 0


def test_an_event_held_by_one_relay_holds_back_the_rest_of_its_run(db: Database) -> None:
    a, b = _events("ra", 3), _events("rb", 1)
    add_events(db, [a[0], b[0], a[1], a[2]])
    clock = FakeClock()

    with SqlUnitOfWork(db) as uow:
        assert repo(db, uow).claim_batch("relay-1", 1, clock.now, LEASE_MS) == [a[0]]
        uow.commit()
    with SqlUnitOfWork(db) as uow:
        # a[1] and a[2] wait for a[0]; rb is independent.
        assert repo(db, uow).claim_batch("relay-2", 10, clock.now, LEASE_MS) == [b[0]]
        uow.commit()
    with SqlUnitOfWork(db) as uow:
        assert repo(db, uow).mark_published([a[0].id, b[0].id], clock.now) == 2
        uow.commit()
    with SqlUnitOfWork(db) as uow:
        assert repo(db, uow).claim_batch("relay-2", 10, clock.now, LEASE_MS) == a[1:]
        uow.commit()


def test_a_batch_may_hold_several_events_of_one_run_in_order(db: Database) -> None:
    a = _events("ra", 5)
    add_events(db, a)
    with SqlUnitOfWork(db) as uow:
        claimed = repo(db, uow).claim_batch("relay-1", 3, 1, LEASE_MS)
        uow.commit()
    assert claimed == a[:3]


def test_an_expired_claim_is_taken_over_by_another_relay(db: Database) -> None:
    events = _events("r1", 3) + _events("r2", 2)
    add_events(db, events)
    clock = FakeClock()
    bus, log = BusLog.on(InProcessBus())

    with SqlUnitOfWork(db) as uow:  # relay-1 claims everything, then dies
        assert len(repo(db, uow).claim_batch("relay-1", 10, clock.now, LEASE_MS)) == 5
        uow.commit()
    relay_2 = relay_for(db, bus, clock, "relay-2")
    assert relay_2.relay_once() == 0  # the claim still holds
    clock.now += LEASE_MS + 1
    assert relay_2.relay_once() == 5
    assert log.ids() == [e.id for e in events]

    with SqlUnitOfWork(db) as uow:  # relay-1 wakes up late: nothing left for it to mark
        assert repo(db, uow).mark_published([e.id for e in events], clock.now) == 0
        uow.commit()
    assert {r.claimed_by for r in outbox_rows(db)} == {"relay-2"}


def test_a_released_claim_is_free_at_once_but_only_its_holder_may_release_it(
    db: Database,
) -> None:
    events = _events("r1", 2)
    add_events(db, events)
    ids = [e.id for e in events]
    with SqlUnitOfWork(db) as uow:
        outbox = repo(db, uow)
        assert outbox.claim_batch("relay-1", 10, 1, LEASE_MS) == events
        assert outbox.release("relay-2", ids) == 0
        assert outbox.claim_batch("relay-2", 10, 1, LEASE_MS) == []
        assert outbox.release("relay-1", ids) == 2
        assert outbox.claim_batch("relay-2", 10, 1, LEASE_MS) == events
        assert outbox.pending_count() == 2
        uow.commit()


def test_the_runner_drains_what_is_committed_while_it_runs(db: Database) -> None:
    bus, log = BusLog.on(InProcessBus())
    relay = Relay(
        lambda: SqlUnitOfWork(db),
        lambda uow: SqlOutboxRepository(uow.connection, db.dialect),
        bus,
        SystemClock(),
        relay_id="relay-runner",
        batch=7,
    )
    # The poll is long: events are seen this fast only thanks to the after-commit wake-up.
    runner = RelayRunner(relay, poll_interval_s=60).start()
    written: list[Event] = []
    try:
        for run in range(5):
            events = _events(f"r{run}", 6)
            with SqlUnitOfWork(db) as uow:
                SqlOutboxRepository(uow.connection, db.dialect).add(events)
                uow.after_commit(runner.notify)
                uow.commit()
            written += events
        wait_until(lambda: len(log.events) == len(written), timeout=20, what="all published")
    finally:
        runner.stop()
    assert sorted(log.ids()) == sorted(e.id for e in written)
    for run in range(5):
        assert log.ids(f"r{run}") == [e.id for e in written if e.run_id == f"r{run}"]
    assert runner.published == 30 and relay.pending() == 0
