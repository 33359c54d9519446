"""The kernel's background loops besides the workers: the outbox relay (events leave
only after commit), the ack forwarder (with a non-SQL audit store, acks a store outage
left in the database reach the store once it is back) and the audit sweep (runs past
their deadline are reconciled).

``serve`` runs both next to its worker pool; ``runkernel reconciler`` runs the sweep
alone, so a run is still flagged when every worker is dead.
"""

from __future__ import annotations

import logging
import threading

from runkernel.bootstrap import Kernel
from runkernel.entrypoints.relay import RelayRunner
from runkernel.services.ack_forwarder import AckForwarder

log = logging.getLogger(__name__)


class ReconcilerRunner:
    """Sweeps every ``interval_s``; a failing sweep is logged and retried next time."""

    def __init__(self, kernel: Kernel, *, interval_s: float | None = None) -> None:
        self.kernel = kernel
        self.interval_s = interval_s or kernel.settings.reconcile_interval_s
        self.sweeps = 0
        self.reconciled = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rk-reconcile", daemon=True)

    def start(self) -> ReconcilerRunner:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconciled += len(self.kernel.reconciler.sweep())
            except Exception:  # the database may be briefly away; the next sweep retries
                log.exception("audit sweep failed")
            self.sweeps += 1
            self._stopping.wait(self.interval_s)


class AckForwarderRunner:
    """Forwards pending acks while there are some, then every ``interval_s``; a failing
    pass (the store or the database away) is logged and retried next time."""

    def __init__(self, forwarder: AckForwarder, *, interval_s: float) -> None:
        self.forwarder = forwarder
        self.interval_s = interval_s
        self.forwarded = 0
        self.failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rk-ack-forward", daemon=True)

    def start(self) -> AckForwarderRunner:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                count = self.forwarder.forward_once()
            except Exception:  # the store or the database may be briefly away
                self.failures += 1
                log.warning(
                    "ack forwarding failed; retrying in %.1fs", self.interval_s, exc_info=True
                )
                count = 0
            self.forwarded += count
            if not count:
                self._stopping.wait(self.interval_s)


class BackgroundServices:
    def __init__(self, kernel: Kernel, *, relay: bool = True, reconciler: bool = True) -> None:
        self.relay = (
            RelayRunner(
                kernel.relay,
                wakeup=kernel.relay_wakeup,
                poll_interval_s=kernel.settings.relay_interval_s,
            )
            if relay
            else None
        )
        self.forwarder = (
            AckForwarderRunner(kernel.ack_forwarder, interval_s=kernel.settings.relay_interval_s)
            if relay and kernel.ack_forwarder is not None
            else None
        )
        self.reconciler = ReconcilerRunner(kernel) if reconciler else None

    def start(self) -> BackgroundServices:
        if self.relay is not None:
            self.relay.start()
        if self.forwarder is not None:
            self.forwarder.start()
        if self.reconciler is not None:
            self.reconciler.start()
        return self

    def stop(self) -> None:
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.relay is not None:
            self.relay.stop()
