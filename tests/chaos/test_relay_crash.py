"""A relay process SIGKILLed after publishing a batch and before marking it published
loses nothing: once its claim expires another relay publishes the batch again, and a
subscriber that dedupes on the event id sees every event exactly once, each run's in
order. (DESIGN: the outbox delivers at least once; issue 3 acceptance.)"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.domain.events import Deduplicator, Event, new_event
from support.relay_process import RelayProcess, add_events, outbox_rows, read_file_log
from support.workers import wait_until

pytestmark = pytest.mark.slow

LEASE_MS = 1_500  # the killed relay's claim: free about 1.5 s after it was taken


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def _written(db: Database) -> list[Event]:
    events = [
        new_event("run.step.completed", tenant_id="t", run_id=f"r{run}", payload={"i": i}, now_ms=i)
        for i in range(4)
        for run in range(3)
    ] + [new_event("reactor.heartbeat", tenant_id=None, run_id=None, payload={}, now_ms=9)]
    for event in events:  # one committed transaction per event, as a worker writes them
        add_events(db, [event])
    return events


def _pending(db: Database) -> int:
    return sum(r.published_at_ms is None for r in outbox_rows(db))


def test_a_relay_killed_before_marking_its_batch_loses_nothing(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    written = _written(db)
    log, marker = tmp_path / "published.jsonl", tmp_path / "about-to-mark"

    doomed = RelayProcess(
        database_url,
        log,
        tmp_path,
        relay_id="doomed",
        lease_ms=LEASE_MS,
        block_before_mark=marker,
    )
    try:
        doomed.wait_ready()
        wait_until(marker.exists, timeout=30, what="the relay to publish and block")
        doomed.signal(signal.SIGKILL)
        assert doomed.wait(timeout=10) == -signal.SIGKILL
    finally:
        doomed.ensure_dead()

    # It published the whole batch, and died holding an unmarked claim on all of it.
    assert json.loads(marker.read_text()) == [e.id for e in written]
    assert [e for _, e in read_file_log(log)] == written
    rows = outbox_rows(db)
    assert [(r.claimed_by, r.published_at_ms) for r in rows] == [("doomed", None)] * len(written)

    survivor = RelayProcess(database_url, log, tmp_path, relay_id="survivor", lease_ms=LEASE_MS)
    try:
        survivor.wait_ready()
        wait_until(lambda: _pending(db) == 0, timeout=30, what="the survivor to take over")
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(timeout=15) == 0, survivor.output()
    finally:
        survivor.ensure_dead()

    delivered = read_file_log(log)
    # At least once: every event went out twice, once per relay, nothing a third time.
    assert Counter(e.id for _, e in delivered) == Counter({e.id: 2 for e in written})
    assert [e for relay, e in delivered if relay == "survivor"] == written
    assert {r.claimed_by for r in outbox_rows(db)} == {"survivor"}

    dedupe = Deduplicator()
    seen = [e for _, e in delivered if dedupe.first_time(e.id)]
    assert seen == written  # exactly once after dedupe, in the order written
