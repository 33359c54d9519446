"""Jobs with one doer at a time across every process on a database: the outbox relay,
the ack forwarder and the audit sweep. Each process that may do a job wraps it in a
:class:`LeasedJob`, which holds the job's row in ``process_leases`` and runs the job only
while it does (DESIGN: workers run them cooperatively, one holder at a time, by a database
lock).

A keeper thread acquires the lease (free or expired: one atomic statement), renews it
every third of its time to live, and releases it on stop so a standby takes over at once.
A holder whose renewal is refused has lost the lease and stops the job at once; one that
cannot reach the database stops before its lease could have run out, so two processes
never do the job at the same time even while the database is away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from runkernel.bootstrap import Kernel

log = logging.getLogger(__name__)

RELAY = "outbox_relay"
ACK_FORWARDER = "ack_forwarder"
SWEEP = "audit_sweep"


class Job(Protocol):
    """A loop on its own thread, started once and stopped once (a new one per holding)."""

    def start(self) -> object: ...
    def stop(self, timeout_s: float = 10.0) -> None: ...


class LeasedJob:
    def __init__(
        self,
        kernel: Kernel,
        name: str,
        job: Callable[[], Job],
        *,
        holder: str,
        ttl_ms: int | None = None,
    ) -> None:
        self.kernel = kernel
        self.name = name
        self.holder = holder
        self.ttl_ms = ttl_ms or int(kernel.settings.lease_s * 1000)
        self.tick_ms = max(1, self.ttl_ms // 3)
        self._new_job = job
        self.job: Job | None = None  # the job of the current holding, if any
        self.acquisitions = 0
        self.losses = 0
        self._expires_at_ms: int | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rk-lease-{name}", daemon=True)

    @property
    def holding(self) -> bool:
        return self.job is not None

    def start(self) -> LeasedJob:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the job, then release the lease for the next holder."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        self._stop_job()
        if self._expires_at_ms is None:
            return
        self._expires_at_ms = None
        try:
            with self.kernel.uow() as uow:
                uow.leases.release(self.name, self.holder)
                uow.commit()
        except Exception:  # the lease then lapses after its time to live
            log.warning(
                "could not release lease %s; it expires on its own", self.name, exc_info=True
            )
        else:
            log.info("%s released lease %s", self.holder, self.name)

    def tick(self) -> None:
        """Acquire or renew the lease once, starting or stopping the job to match."""
        now = self.kernel.clock.now_ms()
        try:
            with self.kernel.uow() as uow:
                if self._expires_at_ms is None:
                    held = uow.leases.acquire(self.name, self.holder, now, self.ttl_ms)
                else:
                    held = uow.leases.renew(self.name, self.holder, now, self.ttl_ms)
                uow.commit()
        except Exception:  # the database may be briefly away; the next tick retries
            log.warning("lease %s: acquire or renew failed", self.name, exc_info=True)
            # Stop before the lease could expire and another process start the job.
            if self._expires_at_ms is not None and now + self.tick_ms >= self._expires_at_ms:
                self._lose("its renewal kept failing")
            return
        if held:
            self._expires_at_ms = now + self.ttl_ms
            if self.job is None:
                self._start_job()
        elif self._expires_at_ms is not None:
            self._lose("another process holds it")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # a job that failed to start: the next tick starts it again
                log.exception("lease %s: starting the job failed", self.name)
            self._stopping.wait(self.tick_ms / 1000)

    def _start_job(self) -> None:
        self.acquisitions += 1
        log.info("%s acquired lease %s", self.holder, self.name)
        job = self._new_job()
        job.start()
        self.job = job

    def _lose(self, why: str) -> None:
        self.losses += 1
        self._expires_at_ms = None
        log.warning("%s lost lease %s (%s): stopping the job", self.holder, self.name, why)
        self._stop_job()

    def _stop_job(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.stop()
