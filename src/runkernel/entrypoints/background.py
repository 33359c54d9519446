"""The kernel's background loops besides the workers: the outbox relay (events leave
only after commit) and the audit sweep (runs past their deadline are reconciled).

``serve`` runs both next to its worker pool; ``runkernel reconciler`` runs the sweep
alone, so a run is still flagged when every worker is dead.
"""

from __future__ import annotations

import logging
import threading

from runkernel.bootstrap import Kernel
from runkernel.entrypoints.relay import RelayRunner

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
        self.reconciler = ReconcilerRunner(kernel) if reconciler else None

    def start(self) -> BackgroundServices:
        if self.relay is not None:
            self.relay.start()
        if self.reconciler is not None:
            self.reconciler.start()
        return self

    def stop(self) -> None:
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.relay is not None:
            self.relay.stop()
