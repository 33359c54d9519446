"""Event buses: where the relay publishes outbox events. In-process for now."""

from runkernel.adapters.bus.memory import InProcessBus

__all__ = ["InProcessBus"]
