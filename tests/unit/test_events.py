"""Event envelopes: exact JSON round trip, topic patterns, and the subscriber-side
deduplication window."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain import events
from runkernel.domain.events import Deduplicator, Event, check_pattern, new_event, topic_matches

# DESIGN.md, "Events and alerts", and issue 7 point 7 (run.pause_expiring, run.cancelled),
# written out again by hand — deliberately not imported.
DESIGN_TOPICS = {
    "run.started",
    "run.step.completed",
    "run.completed",
    "run.failed",
    "run.paused",
    "run.resumed",
    "run.pause_expiring",
    "run.cancelled",
    "incident.created",
    "incident.resolved",
    "policy.evaluated",
    "threshold.exceeded",
    "trace.started",
    "trace.completed",
    "audit.reconciliation.missing",
    "audit.reconciliation.drift",
    "audit.reconciliation.stale",
    "reactor.heartbeat",
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def test_topics_are_the_designs() -> None:
    assert events.TOPICS == DESIGN_TOPICS


@given(
    topic=st.sampled_from(sorted(DESIGN_TOPICS)),
    tenant_id=st.none() | st.text(min_size=1, max_size=20),
    run_id=st.none() | st.text(min_size=1, max_size=20),
    payload=st.dictionaries(st.text(), json_values, max_size=5),
    now_ms=st.integers(min_value=0, max_value=2**62),
)
def test_an_event_round_trips_exactly_through_json(
    topic: str, tenant_id: str | None, run_id: str | None, payload: dict[str, Any], now_ms: int
) -> None:
    event = new_event(topic, tenant_id=tenant_id, run_id=run_id, payload=payload, now_ms=now_ms)
    text = json.dumps(event.to_dict())
    again = Event.from_dict(json.loads(text))
    assert again == event
    assert json.dumps(again.to_dict()) == text


def test_new_event_ids_are_unique_and_time_ordered() -> None:
    made = [
        new_event("run.started", tenant_id="t", run_id="r", payload={}, now_ms=i)
        for i in range(200)
    ]
    ids = [e.id for e in made]
    assert len(set(ids)) == 200
    assert all(i.startswith("evt_") for i in ids)
    # The id's time prefix never goes backwards, so ids sort roughly by creation.
    prefixes = [i[4:16] for i in ids]
    assert prefixes == sorted(prefixes)


def test_new_event_copies_the_payload() -> None:
    payload: dict[str, Any] = {"cost": 1}
    event = new_event("run.completed", tenant_id="t", run_id="r", payload=payload, now_ms=1)
    payload["cost"] = 2
    assert event.payload == {"cost": 1}


@pytest.mark.parametrize("topic", ["", "run.*", "*", "x" * 101, 7])
def test_new_event_refuses_a_bad_topic(topic: Any) -> None:
    with pytest.raises(ValueError, match="topic"):
        new_event(topic, tenant_id=None, run_id=None, payload={}, now_ms=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "id"),
        ({"topic": "run.*"}, "wildcard"),
        ({"run_id": 5}, "run_id"),
        ({"tenant_id": ["t"]}, "tenant_id"),
        ({"payload": [1]}, "payload"),
        ({"created_at_ms": "1"}, "created_at_ms"),
        ({"created_at_ms": True}, "created_at_ms"),
    ],
)
def test_from_dict_refuses_what_is_not_an_event(change: dict[str, Any], message: str) -> None:
    data = new_event("run.failed", tenant_id="t", run_id="r", payload={}, now_ms=3).to_dict()
    data.update(change)
    with pytest.raises(ValueError, match=message):
        Event.from_dict(data)


def test_from_dict_names_missing_fields() -> None:
    with pytest.raises(ValueError, match="payload, created_at_ms"):
        Event.from_dict({"id": "e", "topic": "run.failed", "tenant_id": None, "run_id": None})


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("run.completed", "run.completed", True),
        ("run.completed", "run.completed.extra", False),
        ("run.completed", "run.complete", False),
        ("run.*", "run.started", True),
        ("run.*", "run.step.completed", True),
        ("run.*", "run", False),
        ("run.*", "runs.started", False),
        ("run.*", "trace.started", False),
        ("audit.reconciliation.*", "audit.reconciliation.stale", True),
        ("audit.reconciliation.*", "audit.reconciled", False),
        ("*", "reactor.heartbeat", True),
        ("*", "anything", True),
    ],
)
def test_topic_matches(pattern: str, topic: str, matches: bool) -> None:
    check_pattern(pattern)
    assert topic_matches(pattern, topic) is matches


@pytest.mark.parametrize("pattern", ["", "run*", "*.completed", "run.*.completed", ".*", "**"])
def test_check_pattern_refuses_wildcards_that_would_match_nothing(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        check_pattern(pattern)


def test_dedupe_passes_each_id_once() -> None:
    dedupe = Deduplicator(capacity=10)
    assert [dedupe.first_time(i) for i in ["a", "b", "a", "c", "b"]] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert len(dedupe) == 3


def test_dedupe_forgets_the_least_recently_seen_id_first() -> None:
    dedupe = Deduplicator(capacity=3)
    for event_id in ["a", "b", "c"]:
        assert dedupe.first_time(event_id)
    assert not dedupe.first_time("a")  # a repeat refreshes "a": "b" is now the oldest
    assert dedupe.first_time("d")  # evicts "b"
    assert len(dedupe) == 3
    assert not dedupe.first_time("a")
    assert not dedupe.first_time("c")
    assert dedupe.first_time("b")  # fell out of the window: seen as new


def test_dedupe_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError):
        Deduplicator(capacity=0)


def test_wrap_calls_the_handler_once_per_id_and_retries_after_a_failure() -> None:
    seen: list[str] = []
    fail = {"e2"}

    def handler(event: Event) -> None:
        if event.id in fail:
            fail.discard(event.id)
            raise RuntimeError("boom")
        seen.append(event.id)

    wrapped = Deduplicator().wrap(handler)
    e1, e2 = (Event(i, "run.started", None, None, {}, 0) for i in ("e1", "e2"))
    wrapped(e1)
    wrapped(e1)
    with pytest.raises(RuntimeError):
        wrapped(e2)
    wrapped(e2)  # the failed delivery did not count as handled
    wrapped(e2)
    assert seen == ["e1", "e2"]


def test_dedupe_is_thread_safe() -> None:
    dedupe = Deduplicator(capacity=100_000)
    firsts: list[str] = []
    lock = threading.Lock()
    ids = [f"e{i}" for i in range(2000)]

    def consume() -> None:
        mine = [i for i in ids if dedupe.first_time(i)]
        with lock:
            firsts.extend(mine)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(firsts) == sorted(ids)
