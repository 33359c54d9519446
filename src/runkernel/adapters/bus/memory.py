"""The in-process event bus of the embedded default (and the tests' bus).

Handlers run synchronously in the publisher's thread, in subscription order, so one
publisher's events reach each handler in the order published. Several publishers (relay
threads) may call handlers concurrently: handlers must be thread-safe. A handler that
raises is logged and counted; the others still get the event and the publisher never
sees the error, since the event is already committed and published for everyone else.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from runkernel.domain.events import Event, check_pattern, topic_matches

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]


@dataclass(frozen=True)
class _Subscription:
    key: int
    pattern: str
    handler: Handler


class InProcessBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[_Subscription, ...] = ()
        self._keys = itertools.count()
        self.published = 0
        self.handler_failures = 0

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        check_pattern(pattern)
        with self._lock:
            subscription = _Subscription(next(self._keys), pattern, handler)
            self._subscriptions = (*self._subscriptions, subscription)

        def unsubscribe() -> None:
            with self._lock:
                self._subscriptions = tuple(
                    s for s in self._subscriptions if s.key != subscription.key
                )

        return unsubscribe

    def publish(self, event: Event) -> None:
        # Handlers run outside the lock on a snapshot, so a handler may subscribe,
        # unsubscribe or publish without deadlocking.
        with self._lock:
            subscriptions = self._subscriptions
            self.published += 1
        for subscription in subscriptions:
            if not topic_matches(subscription.pattern, event.topic):
                continue
            try:
                subscription.handler(event)
            except Exception:
                with self._lock:
                    self.handler_failures += 1
                log.exception(
                    "handler %r for %r failed on event %s (%s)",
                    subscription.handler,
                    subscription.pattern,
                    event.id,
                    event.topic,
                )
