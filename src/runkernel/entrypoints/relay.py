"""The relay runtime: one thread that runs :class:`Relay` passes while there is a
backlog, then sleeps until woken (a transaction that wrote events commits and calls
:meth:`RelayRunner.notify` after commit) or until the poll interval passes — the poll
covers events written by other processes and claims left by a dead relay.

Only runtime concerns live here; what a pass does is the relay's business.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from runkernel.services.ports import WakeupSignal
from runkernel.services.relay import Relay
from runkernel.services.wakeup import LocalWakeup

log = logging.getLogger(__name__)


def new_relay_id() -> str:
    return f"relay:{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class RelayRunner:
    """``wakeup`` must be the relay's own signal: a worker's dispatcher clears its
    signal, which would swallow the relay's wake-ups if the two shared one."""

    def __init__(
        self,
        relay: Relay[Any],
        *,
        wakeup: WakeupSignal | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self.relay = relay
        self.wakeup: WakeupSignal = wakeup or LocalWakeup()
        self.poll_interval_s = poll_interval_s
        self.published = 0
        self.failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rk-relay", daemon=True)

    def start(self) -> RelayRunner:
        self._thread.start()
        log.info("relay %s started", self.relay.relay_id)
        return self

    def notify(self) -> None:
        """An after-commit hook for transactions that added events."""
        self.wakeup.notify()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the pass in progress (its events get marked) and stop."""
        self._stopping.set()
        self.wakeup.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        log.info("relay %s stopped after %d events", self.relay.relay_id, self.published)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            # Clear before the pass: a notify during it then makes the wait return at once.
            self.wakeup.clear()
            try:
                count = self.relay.relay_once()
            except Exception:  # the database or bus may be briefly away; keep relaying
                self.failures += 1
                log.exception("relay pass failed; retrying after the poll interval")
                self._stopping.wait(self.poll_interval_s)
                continue
            self.published += count
            if count:
                continue  # a full or partial batch: there may be more right now
            self.wakeup.wait(self.poll_interval_s)
