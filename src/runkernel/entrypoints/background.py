"""The kernel's background loops besides the workers: the outbox relay (events leave
only after commit), the ack forwarder (with a non-SQL audit store, acks a store outage
left in the database reach the store once it is back) and the audit sweep (runs past
their deadline are reconciled).

Each loop has one doer at a time across all processes on the database: whoever holds its
process lease (:mod:`runkernel.entrypoints.leases`). ``serve`` and ``worker`` offer all
of them; ``runkernel relay`` and ``runkernel reconciler`` offer theirs alone, so a job is
still done when every worker is dead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from runkernel.bootstrap import Kernel
from runkernel.entrypoints import leases
from runkernel.entrypoints.leases import Job, LeasedJob
from runkernel.entrypoints.relay import RelayRunner
from runkernel.services.ack_forwarder import AckForwarder

log = logging.getLogger(__name__)


class ReconcilerRunner:
    """Sweeps every ``interval_s``, and applies the timeouts of expired pauses (so
    ``serve``, the worker holding the sweep lease and ``runkernel reconciler`` all do);
    a failing sweep is logged and retried next time."""

    def __init__(self, kernel: Kernel, *, interval_s: float | None = None) -> None:
        self.kernel = kernel
        self.interval_s = interval_s or kernel.settings.reconcile_interval_s
        self.sweeps = 0
        self.reconciled = 0
        self.pause_timeouts = 0
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
            try:
                self.pause_timeouts += self.kernel.pauses.check_timeouts()
            except Exception:  # as above: everything it needs stays in the database
                log.exception("pause timeouts failed")
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
    """The loops a process offers to do, each behind its lease: the relay (with the ack
    forwarder when the audit store is not SQL) and the audit sweep."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        relay: bool = True,
        reconciler: bool = True,
        holder: str | None = None,
    ) -> None:
        self.holder = holder or new_holder_id()
        self.kernel = kernel
        self.jobs: list[LeasedJob] = []
        # Every runner a holding started, for the totals a process prints when it stops.
        self._relays: list[RelayRunner] = []
        self._sweeps: list[ReconcilerRunner] = []
        if relay:
            self._offer(leases.RELAY, self._new_relay)
            forwarder, interval_s = kernel.ack_forwarder, kernel.settings.relay_interval_s
            if forwarder is not None:
                self._offer(
                    leases.ACK_FORWARDER,
                    lambda: AckForwarderRunner(forwarder, interval_s=interval_s),
                )
        if reconciler:
            self._offer(leases.SWEEP, self._new_sweep)

    def _offer(self, name: str, job: Callable[[], Job]) -> None:
        self.jobs.append(LeasedJob(self.kernel, name, job, holder=self.holder))

    def _new_relay(self) -> RelayRunner:
        runner = RelayRunner(
            self.kernel.relay,
            wakeup=self.kernel.relay_wakeup,
            poll_interval_s=self.kernel.settings.relay_interval_s,
        )
        self._relays.append(runner)
        return runner

    def _new_sweep(self) -> ReconcilerRunner:
        runner = ReconcilerRunner(self.kernel)
        self._sweeps.append(runner)
        return runner

    @property
    def names(self) -> list[str]:
        return [job.name for job in self.jobs]

    @property
    def published(self) -> int:
        return sum(runner.published for runner in self._relays)

    @property
    def sweeps(self) -> int:
        return sum(runner.sweeps for runner in self._sweeps)

    @property
    def reconciled(self) -> int:
        return sum(runner.reconciled for runner in self._sweeps)

    def start(self) -> BackgroundServices:
        for job in self.jobs:
            job.start()
        return self

    def stop(self) -> None:
        for job in reversed(self.jobs):
            job.stop()


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
