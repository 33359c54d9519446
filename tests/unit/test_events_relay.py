"""The relay's contract with its ports, through fakes: claim, publish in order, mark in a
second transaction; a publish that fails marks what went out and gives back the rest.
The same behaviour on the real databases is in tests/integration/test_outbox*.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import pytest

from runkernel.adapters.bus import InProcessBus
from runkernel.domain.events import Event, new_event
from runkernel.entrypoints.relay import RelayRunner
from runkernel.services.relay import Relay
from support.workers import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@dataclass
class Row:
    event: Event
    claimed_by: str | None = None
    claimed_until: int = 0
    published_at: int | None = None


@dataclass
class FakeOutbox:
    """Enough of the outbox for the relay: single relay, order kept by list position."""

    rows: list[Row] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def add(self, events: Sequence[Event]) -> None:
        self.rows.extend(Row(e) for e in events)

    def claim_batch(self, relay_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Event]:
        due = [r for r in self.rows if r.published_at is None and r.claimed_until < now_ms]
        for row in due[:limit]:
            row.claimed_by, row.claimed_until = relay_id, now_ms + lease_ms
        self.log.append(f"claim {len(due[:limit])}")
        return [r.event for r in due[:limit]]

    def mark_published(self, ids: Sequence[str], now_ms: int) -> int:
        marked = [r for r in self.rows if r.event.id in ids and r.published_at is None]
        for row in marked:
            row.published_at = now_ms
        self.log.append(f"mark {len(ids)}")
        return len(marked)

    def release(self, relay_id: str, ids: Sequence[str]) -> int:
        released = [r for r in self.rows if r.event.id in ids and r.claimed_by == relay_id]
        for row in released:
            row.claimed_by, row.claimed_until = None, 0
        self.log.append(f"release {len(ids)}")
        return len(released)

    def pending_count(self) -> int:
        return sum(r.published_at is None for r in self.rows)


class FakeUow:
    def __init__(self, outbox: FakeOutbox) -> None:
        self.outbox = outbox
        self.committed = False

    def __enter__(self) -> FakeUow:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.outbox.log.append("commit" if self.committed else "rollback")

    def commit(self) -> None:
        self.committed = True

    def after_commit(self, hook: Callable[[], None]) -> None:
        raise NotImplementedError


def _relay(outbox: FakeOutbox, bus: InProcessBus, **options: int) -> Relay[FakeUow]:
    return Relay(
        lambda: FakeUow(outbox),
        lambda uow: uow.outbox,
        bus,
        FakeClock(),
        relay_id="relay-1",
        **options,
    )


def _events(n: int, run_id: str = "r1") -> list[Event]:
    return [
        new_event("run.step.completed", tenant_id="t", run_id=run_id, payload={"i": i}, now_ms=i)
        for i in range(n)
    ]


def test_a_pass_publishes_in_order_and_marks_in_a_second_transaction() -> None:
    outbox, bus = FakeOutbox(), InProcessBus()
    events = _events(5)
    outbox.add(events)
    got: list[Event] = []
    bus.subscribe("*", got.append)

    relay = _relay(outbox, bus, batch=3)
    assert relay.relay_once() == 3
    assert relay.relay_once() == 2
    assert relay.relay_once() == 0
    assert got == events
    assert outbox.pending_count() == 0
    assert outbox.log[:4] == ["claim 3", "commit", "mark 3", "release 0"]


def test_a_failed_publish_marks_the_sent_prefix_and_releases_the_rest() -> None:
    outbox, bus = FakeOutbox(), InProcessBus()
    events = _events(4)
    outbox.add(events)
    relay = _relay(outbox, bus)
    failing = {events[2].id}
    real_publish = bus.publish

    def flaky(event: Event) -> None:
        if event.id in failing:
            failing.discard(event.id)
            raise ConnectionError("bus away")
        real_publish(event)

    bus.publish = flaky  # type: ignore[method-assign]
    got: list[Event] = []
    bus.subscribe("*", got.append)

    with pytest.raises(ConnectionError):
        relay.relay_once()
    assert [r.published_at is not None for r in outbox.rows] == [True, True, False, False]
    assert [r.claimed_by for r in outbox.rows[2:]] == [None, None]  # retried now, not later
    assert relay.relay_once() == 2
    assert got == events


def test_the_runner_relays_on_wakeup_and_stops() -> None:
    outbox, bus = FakeOutbox(), InProcessBus()
    got: list[Event] = []
    bus.subscribe("*", got.append)
    # A long poll: only the wake-up can make the runner see the second batch quickly.
    runner = RelayRunner(_relay(outbox, bus), poll_interval_s=60).start()
    try:
        first = _events(2, "r1")
        outbox.add(first)
        runner.notify()
        wait_until(lambda: len(got) == 2, timeout=10, what="first batch")
        second = _events(3, "r2")
        outbox.add(second)
        runner.notify()
        wait_until(lambda: len(got) == 5, timeout=10, what="second batch")
    finally:
        runner.stop()
    assert not runner.running
    assert got == first + second
    assert runner.published == 5


def test_the_runner_survives_a_failing_pass() -> None:
    outbox, bus = FakeOutbox(), InProcessBus()
    outbox.add(_events(1))
    calls = {"n": 0}
    real_claim = outbox.claim_batch

    def flaky_claim(relay_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Event]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database away")
        return real_claim(relay_id, limit, now_ms, lease_ms)

    outbox.claim_batch = flaky_claim  # type: ignore[method-assign]
    runner = RelayRunner(_relay(outbox, bus), poll_interval_s=0.05).start()
    try:
        wait_until(lambda: outbox.pending_count() == 0, timeout=10, what="retry after failure")
    finally:
        runner.stop()
    assert runner.failures == 1
    assert runner.published == 1
