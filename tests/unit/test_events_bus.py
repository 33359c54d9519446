"""The in-process bus: routing by pattern, isolation of a failing handler, unsubscribe,
and re-entrant handlers."""

from __future__ import annotations

import logging
import threading

import pytest

from runkernel.adapters.bus import InProcessBus
from runkernel.domain.events import Event, new_event


def _event(topic: str, run_id: str | None = "r1") -> Event:
    return new_event(topic, tenant_id="t", run_id=run_id, payload={"n": 1}, now_ms=1)


def test_handlers_get_the_events_their_pattern_matches() -> None:
    bus = InProcessBus()
    got: dict[str, list[str]] = {"exact": [], "prefix": [], "all": []}
    bus.subscribe("run.completed", lambda e: got["exact"].append(e.topic))
    bus.subscribe("run.*", lambda e: got["prefix"].append(e.topic))
    bus.subscribe("*", lambda e: got["all"].append(e.topic))
    for topic in ["run.started", "run.completed", "incident.created", "run.step.completed"]:
        bus.publish(_event(topic))
    assert got == {
        "exact": ["run.completed"],
        "prefix": ["run.started", "run.completed", "run.step.completed"],
        "all": ["run.started", "run.completed", "incident.created", "run.step.completed"],
    }
    assert bus.published == 4


def test_a_failing_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = InProcessBus()
    got: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    bus.subscribe("*", lambda e: got.append("before"))
    bus.subscribe("*", broken)
    bus.subscribe("*", lambda e: got.append("after"))
    event = _event("run.failed")
    with caplog.at_level(logging.ERROR):
        bus.publish(event)  # the publisher never sees a handler's error
    assert got == ["before", "after"]
    assert bus.handler_failures == 1
    assert event.id in caplog.text and "handler bug" in caplog.text


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    bus = InProcessBus()
    got: list[str] = []
    unsubscribe = bus.subscribe("*", lambda e: got.append(e.id))
    first = _event("run.started")
    bus.publish(first)
    unsubscribe()
    unsubscribe()
    bus.publish(_event("run.started"))
    assert got == [first.id]


def test_a_handler_may_subscribe_and_publish_without_deadlock() -> None:
    bus = InProcessBus()
    got: list[str] = []

    def chain(event: Event) -> None:
        if event.topic == "run.completed":
            bus.subscribe("trace.*", lambda e: got.append(e.topic))
            bus.publish(_event("trace.completed"))

    bus.subscribe("run.completed", chain)
    bus.publish(_event("run.completed"))
    assert got == ["trace.completed"]


def test_a_bad_pattern_is_refused_at_subscribe() -> None:
    with pytest.raises(ValueError, match="pattern"):
        InProcessBus().subscribe("run*", lambda e: None)


def test_concurrent_publishers_deliver_every_event() -> None:
    bus = InProcessBus()
    seen: list[str] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            seen.append(event.id)

    bus.subscribe("*", record)
    sent = [[_event("run.step.completed") for _ in range(300)] for _ in range(4)]

    def publish(batch: list[Event]) -> None:
        for event in batch:
            bus.publish(event)

    threads = [threading.Thread(target=publish, args=(batch,)) for batch in sent]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(e.id for batch in sent for e in batch)
    assert bus.published == 1200
