"""Stopping a pool never strands a run: a claim that lands while ``stop()`` is shutting the
pool down must be given back (or never made), not left leased to a worker that is gone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Run
from runkernel.entrypoints.worker import WorkerPool
from support.skills import build_registry, log_plan
from support.workers import run_row, wait_until


@pytest.fixture
def kernel(database_url: str, tmp_path: Path) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url, lease_s=30), skills=build_registry(tmp_path))
    k.migrate()
    yield k
    k.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_claim_racing_with_stop_is_released_not_stranded(kernel: Kernel) -> None:
    tenant = make_tenant(kernel)
    pool = WorkerPool(kernel, concurrency=1)

    # Hold the dispatcher's next claim until stop() has shut the executor pool down: the
    # claim query then commits during shutdown, as it can whenever the query is slow.
    armed, in_claim, shut_down = threading.Event(), threading.Event(), threading.Event()
    real_claim, real_shutdown = pool._claim, pool._pool.shutdown

    def claim(limit: int) -> list[Run]:
        if armed.is_set():
            in_claim.set()
            assert shut_down.wait(10)
        return real_claim(limit)

    def shutdown(wait: bool = True, *, cancel_futures: bool = False) -> None:
        real_shutdown(wait=wait, cancel_futures=cancel_futures)
        shut_down.set()

    pool._claim = claim  # type: ignore[method-assign]
    pool._pool.shutdown = shutdown  # type: ignore[method-assign]
    pool.start()
    armed.set()
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)).run.id
    assert in_claim.wait(10)
    pool.stop(drain_timeout_s=1)

    row = run_row(kernel, run_id)
    assert row.lease_owner is None, (
        f"run {run_id} is still leased to stopped worker {row.lease_owner} "
        f"(status {row.status}, attempt {row.attempt}) until the lease runs out"
    )

    # And another worker can take it at once, not after the 30 s lease.
    other = WorkerPool(kernel, concurrency=1).start()
    try:
        wait_until(
            lambda: run_row(kernel, run_id).phase == "COMPLETED", timeout=10, what="run completed"
        )
    finally:
        other.stop(drain_timeout_s=5)
