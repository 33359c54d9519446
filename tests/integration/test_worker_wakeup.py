"""A run submitted while the worker is idle starts at once, not at the next poll.

The poll interval is 30 s, so a start within a few seconds can only come from the wake-up
path: the in-process signal on SQLite, LISTEN/NOTIFY on PostgreSQL — there submitted from a
different Kernel object than the worker's, so no in-process signal can reach it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.entrypoints.worker import WorkerPool
from support.skills import build_registry, log_plan
from support.workers import run_row, wait_until

POLL_S = 30.0
PROMPT_MS = 5_000  # generous for a loaded 2-core machine; polling alone would take >= 30 s


def _idle_spy(kernel: Kernel) -> threading.Event:
    """An event set whenever the dispatcher goes to sleep on the wake-up signal."""
    idle = threading.Event()
    original = kernel.wakeup.wait

    def wait(timeout: float) -> bool:
        if timeout >= POLL_S:
            idle.set()
        return original(timeout)

    kernel.wakeup.wait = wait  # type: ignore[method-assign]
    return idle


@pytest.fixture
def worker_kernel(database_url: str, tmp_path: Path) -> Iterator[Kernel]:
    k = build_kernel(
        make_settings(database_url, poll_interval_s=POLL_S), skills=build_registry(tmp_path)
    )
    k.migrate()
    yield k
    k.close()


def _submit_while_idle(worker: Kernel, submitter: Kernel) -> None:
    tenant = make_tenant(submitter)
    idle = _idle_spy(worker)
    pool = WorkerPool(worker, concurrency=2).start()
    try:
        listener = worker._listener
        if listener is not None:
            assert listener.connected.wait(10), "LISTEN connection never came up"
        for _ in range(3):  # three times, each from a fully idle worker
            assert idle.wait(10), "the dispatcher never went idle"
            idle.clear()
            run_id = submitter.runs.submit(
                tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)
            ).run.id
            row = wait_until(
                lambda rid=run_id: (r := run_row(worker, rid)).phase == "COMPLETED" and r,
                timeout=POLL_S / 2,
                what="run completed well before the next poll",
            )
            assert row.status == "succeeded"
            assert row.started_at_ms - row.created_at_ms < PROMPT_MS, (
                f"started {row.started_at_ms - row.created_at_ms} ms after submission"
            )
    finally:
        pool.stop(drain_timeout_s=5)


def test_sqlite_in_process_signal_wakes_an_idle_worker(sqlite_url: str, tmp_path: Path) -> None:
    kernel = build_kernel(
        make_settings(sqlite_url, poll_interval_s=POLL_S), skills=build_registry(tmp_path)
    )
    kernel.migrate()
    try:
        _submit_while_idle(kernel, kernel)
    finally:
        kernel.close()


@pytest.mark.postgres
def test_postgres_notify_wakes_an_idle_worker_of_another_kernel(
    postgres_url: str, tmp_path: Path
) -> None:
    worker = build_kernel(
        make_settings(postgres_url, poll_interval_s=POLL_S), skills=build_registry(tmp_path)
    )
    submitter = build_kernel(
        make_settings(postgres_url, poll_interval_s=POLL_S), skills=build_registry(tmp_path)
    )
    worker.migrate()
    try:
        assert worker.wakeup is not submitter.wakeup
        _submit_while_idle(worker, submitter)
    finally:
        submitter.close()
        worker.close()
