"""The worker runtime: a dispatcher that claims runs when slots are free, a thread pool
that executes them, and a lease keeper that renews every held lease.

Only runtime concerns live here (concurrency, wake-ups, leases, shutdown); what a run
does is the executor's business and SQL is the repositories'.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from runkernel.bootstrap import Kernel
from runkernel.domain.records import Claim, Run
from runkernel.services.executor import Execution

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class WorkerPool:
    def __init__(
        self,
        kernel: Kernel,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        settings = kernel.settings
        self.kernel = kernel
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or settings.worker_concurrency
        self._lease_ms = int(settings.lease_s * 1000)
        self._batch = settings.claim_batch
        self._poll_s = settings.poll_interval_s
        self._inflight: dict[str, Execution] = {}
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="rk-run")
        self._threads = [
            threading.Thread(target=self._dispatch_loop, name="rk-dispatch", daemon=True),
            threading.Thread(target=self._lease_loop, name="rk-lease", daemon=True),
        ]
        self.claimed = 0
        self.finished = 0

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> WorkerPool:
        self.kernel.listen()
        for thread in self._threads:
            thread.start()
        log.info("worker %s started with %d slots", self.worker_id, self.concurrency)
        return self

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stop claiming; let in-flight runs finish for up to ``drain_timeout_s``, then
        release the rest at their next step boundary so another worker takes them."""
        timeout = (
            self.kernel.settings.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        )
        self._stopping.set()
        self.kernel.wakeup.notify()
        with self._slot_free:
            self._slot_free.notify_all()
            self._slot_free.wait_for(lambda: not self._inflight, timeout=timeout)
            for execution in self._inflight.values():
                execution.release_requested = True
        self._pool.shutdown(wait=True)
        for thread in self._threads:
            thread.join(timeout=5)
        log.info("worker %s stopped", self.worker_id)

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    # -- dispatch -----------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        wakeup = self.kernel.wakeup
        while not self._stopping.is_set():
            with self._slot_free:
                self._slot_free.wait_for(
                    lambda: len(self._inflight) < self.concurrency or self._stopping.is_set()
                )
                free = self.concurrency - len(self._inflight)
            if self._stopping.is_set():
                return
            wakeup.clear()
            try:
                runs = self._claim(min(free, self._batch))
            except Exception:  # the database may be briefly away; never kill the dispatcher
                log.exception("claim failed; retrying after the poll interval")
                self._stopping.wait(self._poll_s)
                continue
            if runs:
                for run in runs:
                    self._start(run)
                continue
            wakeup.wait(self._poll_s)

    def _claim(self, limit: int) -> list[Run]:
        now = self.kernel.clock.now_ms()
        with self.kernel.uow() as uow:
            runs = uow.runs.claim(self.worker_id, limit, now, self._lease_ms)
            opened = self.kernel.completion.open_claimed(uow, runs)
            uow.commit()
        self.kernel.completion.acks_committed(opened)  # never raises: the claim is made
        return runs

    def _start(self, run: Run) -> None:
        claim = Claim.of(run, self.worker_id)
        execution = Execution(claim)
        # Check-and-submit under the lock: stop() sets _stopping before it takes the lock
        # and shuts the pool down only after, so a claim racing with stop() is handed back
        # instead of being stranded on a pool that no longer accepts work.
        with self._lock:
            if not self._stopping.is_set():
                self._inflight[run.id] = execution
                self.claimed += 1
                self._pool.submit(self._execute, run, execution)
                return
        with self.kernel.uow() as uow:
            uow.runs.release(claim, self.kernel.clock.now_ms())
            uow.commit()

    def _execute(self, run: Run, execution: Execution) -> None:
        try:
            outcome = self.kernel.executor.execute(run, execution)
            log.debug("run %s attempt %d: %s", run.id, run.attempt, outcome)
        except Exception:  # leave the run to lease expiry; the pool must keep serving
            log.exception("run %s attempt %d crashed; its lease will expire", run.id, run.attempt)
        finally:
            with self._slot_free:
                self._inflight.pop(run.id, None)
                self.finished += 1
                self._slot_free.notify_all()

    # -- leases -------------------------------------------------------------------
    def _lease_loop(self) -> None:
        interval = self._lease_ms / 3000
        while not self._stopping.wait(interval) or self.inflight:
            with self._lock:
                executions = list(self._inflight.values())
            if not executions:
                continue
            try:
                self._renew(executions)
            except Exception:  # a failed renewal is retried at the next tick
                log.exception("lease renewal failed")
            if self._stopping.is_set() and not self.inflight:
                return

    def _renew(self, executions: list[Execution]) -> None:
        now = self.kernel.clock.now_ms()
        with self.kernel.uow() as uow:
            lost = [e for e in executions if not uow.runs.renew_lease(e.claim, now, self._lease_ms)]
            uow.commit()
        for execution in lost:
            with self._lock:
                still_running = execution.claim.run_id in self._inflight
            if still_running and not self._ended_by_this_claim(execution):
                log.warning("lease on run %s was taken over", execution.claim.run_id)
                execution.lost = True

    def _ended_by_this_claim(self, execution: Execution) -> bool:
        """A renewal also fails for a run this claim just completed or paused (its slot
        is freed a moment later): that is no takeover, and nothing is lost."""
        with self.kernel.uow(read_only=True) as uow:
            run = uow.runs.get_for_worker(execution.claim.run_id)
        return (
            run is not None and run.claim_epoch == execution.claim.epoch and run.lease_owner is None
        )
