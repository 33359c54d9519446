"""Several relays at once. PostgreSQL: claims skip each other's locked rows instead of
waiting, and never hand out an event whose run has an earlier event in another relay's
hands. Both databases: relays racing a writer publish every event once and every run's
events in order."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from runkernel.adapters.bus import InProcessBus
from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.adapters.db.unit_of_work import SqlUnitOfWork
from runkernel.domain.events import Event, new_event
from runkernel.entrypoints.relay import RelayRunner
from runkernel.services.ports import SystemClock
from support.relay_process import BusLog, add_events, outbox_rows, relay_for, repo
from support.workers import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url, pool_size=12)
    migrate.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[Database]:
    database = open_database(postgres_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def _event(run_id: str, i: int) -> Event:
    return new_event("run.step.completed", tenant_id="t", run_id=run_id, payload={"i": i}, now_ms=0)


@pytest.mark.postgres
def test_a_claim_in_flight_is_skipped_not_waited_for(postgres_db: Database) -> None:
    db = postgres_db
    order = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", 1)]
    a_1, b_1, a_2, b_2, c_1 = (_event(run_id, i) for run_id, i in order)
    add_events(db, [a_1, b_1, a_2, b_2, c_1])
    with SqlUnitOfWork(db) as first:
        assert repo(db, first).claim_batch("relay-1", 2, 1, 10_000) == [a_1, b_1]
        # relay-1 has not committed: its rows are locked. relay-2 must not wait for them
        # (the lock timeout turns a wait into a failure) and must not take a_2 or b_2,
        # whose runs have an earlier event in relay-1's hands.
        with SqlUnitOfWork(db) as second:
            second.connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            assert repo(db, second).claim_batch("relay-2", 10, 1, 10_000) == [c_1]
            second.commit()
        first.commit()
    claimed = {r.id: r.claimed_by for r in outbox_rows(db)}
    assert claimed == {
        a_1.id: "relay-1",
        b_1.id: "relay-1",
        a_2.id: None,
        b_2.id: None,
        c_1.id: "relay-2",
    }


def test_racing_relays_publish_each_event_once_and_each_run_in_order(db: Database) -> None:
    runs_per_writer, events_per_run, writers = 10, 8, 2
    bus, log = BusLog.on(InProcessBus())
    runners = [
        RelayRunner(
            relay_for(db, bus, SystemClock(), f"relay-{n}", batch=5, lease_ms=60_000),
            poll_interval_s=0.02,
        ).start()
        for n in range(3)
    ]
    written: list[list[Event]] = [[] for _ in range(writers)]

    def write(w: int) -> None:
        # Round-robin over this writer's runs, one or two events per transaction, so
        # runs interleave in seq order while each run's events are written in order.
        runs = {f"w{w}r{r}": 0 for r in range(runs_per_writer)}
        while any(i < events_per_run for i in runs.values()):
            for run_id, i in runs.items():
                if i >= events_per_run:
                    continue
                events = [_event(run_id, k) for k in range(i, min(i + 1 + i % 2, events_per_run))]
                add_events(db, events)
                runs[run_id] = i + len(events)
                written[w].extend(events)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = runs_per_writer * events_per_run * writers
    try:
        wait_until(lambda: len(log.events) >= total, timeout=60, what="all events published")
        wait_until(lambda: runners[0].relay.pending() == 0, timeout=30, what="all marked")
    finally:
        for runner in runners:
            runner.stop()

    # Leases never expired, so no event was claimed twice: each was published once.
    assert Counter(log.ids()).most_common(1)[0][1] == 1
    all_written = [e for events in written for e in events]
    assert sorted(log.ids()) == sorted(e.id for e in all_written)
    for run_id in {e.run_id for e in all_written}:
        assert log.ids(run_id) == [e.id for e in all_written if e.run_id == run_id], run_id
    publishers = Counter(r.claimed_by for r in outbox_rows(db))
    assert sum(publishers.values()) == total
    assert sum(r.published for r in runners) == total
