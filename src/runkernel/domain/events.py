"""Event envelopes: what the outbox stores and the bus carries.

Delivery is at least once (a relay that dies between publishing and marking the event
published sends it again), so every event has a unique, time-ordered ``id`` and
subscribers drop repeats with a :class:`Deduplicator`.

Subscription patterns are an exact topic, a prefix wildcard ``run.*`` (every topic
under ``run.``, at any depth) or ``*`` (everything).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runkernel.domain.ids import new_id

RUN_STARTED = "run.started"
RUN_STEP_COMPLETED = "run.step.completed"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
RUN_PAUSED = "run.paused"
RUN_RESUMED = "run.resumed"
RUN_PAUSE_EXPIRING = "run.pause_expiring"
RUN_CANCELLED = "run.cancelled"
INCIDENT_CREATED = "incident.created"
INCIDENT_RESOLVED = "incident.resolved"
POLICY_EVALUATED = "policy.evaluated"
THRESHOLD_EXCEEDED = "threshold.exceeded"
TRACE_STARTED = "trace.started"
TRACE_COMPLETED = "trace.completed"
AUDIT_RECONCILIATION_MISSING = "audit.reconciliation.missing"
AUDIT_RECONCILIATION_DRIFT = "audit.reconciliation.drift"
AUDIT_RECONCILIATION_STALE = "audit.reconciliation.stale"
REACTOR_HEARTBEAT = "reactor.heartbeat"

TOPICS = frozenset(
    {
        RUN_STARTED,
        RUN_STEP_COMPLETED,
        RUN_COMPLETED,
        RUN_FAILED,
        RUN_PAUSED,
        RUN_RESUMED,
        RUN_PAUSE_EXPIRING,
        RUN_CANCELLED,
        INCIDENT_CREATED,
        INCIDENT_RESOLVED,
        POLICY_EVALUATED,
        THRESHOLD_EXCEEDED,
        TRACE_STARTED,
        TRACE_COMPLETED,
        AUDIT_RECONCILIATION_MISSING,
        AUDIT_RECONCILIATION_DRIFT,
        AUDIT_RECONCILIATION_STALE,
        REACTOR_HEARTBEAT,
    }
)
MAX_TOPIC_LENGTH = 100  # the outbox column's width

_FIELDS = ("id", "topic", "tenant_id", "run_id", "payload", "created_at_ms")


@dataclass(frozen=True, slots=True)
class Event:
    """One fact that happened, as published. ``run_id`` orders delivery: events of one
    run reach subscribers in the order they were written; ``None`` means unordered."""

    id: str
    topic: str
    tenant_id: str | None
    run_id: str | None
    payload: dict[str, Any] = field(hash=False)
    created_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "payload": self.payload,
            "created_at_ms": self.created_at_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Rebuild an event from :meth:`to_dict` output; ``ValueError`` if it is not one."""
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise ValueError(f"event is missing {', '.join(missing)}")
        event_id, topic, created = data["id"], data["topic"], data["created_at_ms"]
        tenant_id, run_id, payload = data["tenant_id"], data["run_id"], data["payload"]
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("event id must be a non-empty string")
        _check_topic(topic)
        for name, value in (("tenant_id", tenant_id), ("run_id", run_id)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"event {name} must be a string or null")
        if not isinstance(payload, dict):
            raise ValueError("event payload must be an object")
        # bool is an int in Python but not a timestamp.
        if not isinstance(created, int) or isinstance(created, bool):
            raise ValueError("event created_at_ms must be an integer")
        return cls(event_id, topic, tenant_id, run_id, dict(payload), created)


def new_event(
    topic: str,
    *,
    tenant_id: str | None,
    run_id: str | None,
    payload: Mapping[str, Any],
    now_ms: int,
) -> Event:
    """A new event with a fresh time-ordered id; ``payload`` is copied so later changes
    to the caller's dict cannot alter what gets stored."""
    _check_topic(topic)
    return Event(new_id("evt"), topic, tenant_id, run_id, dict(payload), now_ms)


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"event topic must be a string of 1 to {MAX_TOPIC_LENGTH} characters")
    if "*" in topic:
        raise ValueError(f"event topic {topic!r} must not contain a wildcard")


def check_pattern(pattern: str) -> None:
    """``ValueError`` unless ``pattern`` is an exact topic, ``prefix.*`` or ``*``: a
    wildcard anywhere else would silently match nothing."""
    if pattern == "*":
        return
    base = pattern[:-2] if pattern.endswith(".*") else pattern
    if not base or "*" in base:
        raise ValueError(f"bad topic pattern {pattern!r}: use 'topic', 'prefix.*' or '*'")


def topic_matches(pattern: str, topic: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-1])
    return pattern == topic


class Deduplicator:
    """Remembers the last ``capacity`` event ids seen, so an at-least-once stream is
    handled once per id. Thread-safe: one instance may guard several handler threads.

    A repeat older than ``capacity`` distinct ids gets through again; size it to cover
    the redelivery window (a relay's batch times the relays that can retry it)."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen (within the window), else False."""
        with self._lock:
            if event_id in self._seen:
                # A repeat refreshes the id: redeliveries tend to come in bursts.
                self._seen.move_to_end(event_id)
                return False
            self._seen[event_id] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True

    def forget(self, event_id: str) -> None:
        with self._lock:
            self._seen.pop(event_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def wrap(self, handler: Callable[[Event], None]) -> Callable[[Event], None]:
        """``handler`` called only for events not seen before. If it raises, the id is
        forgotten so a redelivery gets another chance instead of being dropped."""

        def deduplicated(event: Event) -> None:
            if not self.first_time(event.id):
                return
            try:
                handler(event)
            except BaseException:
                self.forget(event.id)
                raise

        return deduplicated
