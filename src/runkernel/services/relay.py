"""The outbox relay: moves committed events from the outbox to the event bus.

One pass claims a batch (one transaction, committed before anything is published, so
the claim survives the relay), publishes the events in order, then marks them published
(a second transaction). A crash after publishing and before the mark leaves the claim to
expire and another pass publishes the events again: delivery is at least once, never
lost. Subscribers dedupe on the event id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from runkernel.domain.events import Event
from runkernel.services.ports import Clock, EventBus, OutboxRepository

log = logging.getLogger(__name__)


class Transaction(Protocol):
    """All the relay needs of a unit of work: its boundary."""

    def __enter__(self) -> Any: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...


U = TypeVar("U", bound=Transaction)


class Relay(Generic[U]):
    """``outbox`` gives the outbox repository of an open unit of work; it is a parameter
    so the relay works before (and after) the unit of work grows an ``outbox``
    attribute: ``outbox=lambda uow: uow.outbox``."""

    def __init__(
        self,
        uow: Callable[[], U],
        outbox: Callable[[U], OutboxRepository],
        bus: EventBus,
        clock: Clock,
        *,
        relay_id: str,
        batch: int = 100,
        lease_ms: int = 30_000,
    ) -> None:
        if batch < 1 or lease_ms < 1:
            raise ValueError("batch and lease_ms must be positive")
        self._uow = uow
        self._outbox = outbox
        self._bus = bus
        self._clock = clock
        self.relay_id = relay_id
        self.batch = batch
        self.lease_ms = lease_ms

    def relay_once(self) -> int:
        """Publish one batch; returns how many events were published (0: nothing due).

        If publishing an event raises, the events before it are marked published, it
        and the rest of the batch are released for the next pass (keeping their order),
        and the error propagates."""
        events = self._claim()
        if not events:
            return 0
        published: list[str] = []
        try:
            for event in events:
                self._bus.publish(event)
                published.append(event.id)
        finally:
            self._settle(published, [e.id for e in events[len(published) :]])
        return len(published)

    def pending(self) -> int:
        tx = self._uow()
        with tx:
            return self._outbox(tx).pending_count()

    def _claim(self) -> list[Event]:
        tx = self._uow()
        with tx:
            events = self._outbox(tx).claim_batch(
                self.relay_id, self.batch, self._clock.now_ms(), self.lease_ms
            )
            tx.commit()
        return events

    def _settle(self, published: list[str], unpublished: list[str]) -> None:
        if not published and not unpublished:
            return
        tx = self._uow()
        with tx:
            outbox = self._outbox(tx)
            outbox.mark_published(published, self._clock.now_ms())
            outbox.release(self.relay_id, unpublished)
            tx.commit()
        if unpublished:
            log.warning("relay %s released %d unpublished events", self.relay_id, len(unpublished))
