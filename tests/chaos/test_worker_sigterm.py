"""SIGTERM drains a worker process: an in-flight run either finishes within the drain time
or is released at its next step boundary (lease owner cleared) for another worker to
complete — and no step runs twice either way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.entrypoints.worker import WorkerPool
from support.skills import blocking_plan, build_registry, read_calls
from support.workers import (
    WorkerProcess,
    assert_lifecycle_invariants,
    rows,
    run_row,
    wait_until,
)

pytestmark = pytest.mark.slow

STEP_S = 2.0  # how long step 2 takes in attempt 1; SIGTERM arrives at its start


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@pytest.fixture
def kernel(database_url: str, log_dir: Path) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url), skills=build_registry(log_dir))
    k.migrate()
    yield k
    k.close()


def _terminate_mid_step(
    kernel: Kernel, tenant: TenantContext, database_url: str, tmp_path: Path, drain_s: float
) -> tuple[str, str, str]:
    """Run the blocking plan on a worker process; SIGTERM it as step 2 starts; wait for it
    to exit. Returns the run id, the worker id and the process output."""
    marker = tmp_path / "in-step-2"
    worker = WorkerProcess(
        database_url,
        tmp_path / "calls",
        tmp_path,
        concurrency=1,
        lease_s=5,
        drain_timeout=drain_s,
    )
    try:
        worker_id = worker.wait_ready()
        run_id = kernel.runs.submit(
            tenant.principal, agent_id=tenant.agent.id, plan=blocking_plan(marker, sleep_s=STEP_S)
        ).run.id
        wait_until(marker.exists, timeout=30, what="step 2 to start")
        worker.terminate()
        assert worker.wait(timeout=30) == 0, worker.output()
    finally:
        worker.ensure_dead()
    return run_id, worker_id, worker.output()


def test_sigterm_with_enough_drain_time_lets_the_run_finish(
    kernel: Kernel, database_url: str, tmp_path: Path, log_dir: Path
) -> None:
    tenant = make_tenant(kernel)
    run_id, worker_id, output = _terminate_mid_step(
        kernel, tenant, database_url, tmp_path, drain_s=30
    )

    assert "STOPPED claimed=1 finished=1" in output
    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.phase.value, run.status.value, run.attempt, run.lease_owner) == (
        "COMPLETED",
        "succeeded",
        1,
        None,
    )
    assert [(s.step_id, s.attempt) for s in run.steps] == [
        ("first", 1),
        ("second", 1),
        ("third", 1),
    ]
    claims = rows(kernel, "SELECT attempt, worker_id FROM run_claims WHERE run_id = :id", id=run_id)
    assert [tuple(c) for c in claims] == [(1, worker_id)]
    calls = Counter((c.step_id, c.attempt) for c in read_calls(log_dir))
    assert calls == {("first", 1): 1, ("second", 1): 1, ("third", 1): 1}
    assert_lifecycle_invariants(kernel)


def test_sigterm_past_the_drain_time_releases_the_run_for_another_worker(
    kernel: Kernel, database_url: str, tmp_path: Path, log_dir: Path
) -> None:
    tenant = make_tenant(kernel)
    run_id, worker_id, _ = _terminate_mid_step(kernel, tenant, database_url, tmp_path, drain_s=0.2)

    # Step 2 finished and was stored; the run was then given back, not failed.
    row = run_row(kernel, run_id)
    assert (row.phase, row.status, row.attempt, row.next_step, row.lease_owner) == (
        "EXECUTING",
        "running",
        1,
        2,
        None,
    )
    assert row.lease_expires_at_ms <= kernel.clock.now_ms()  # claimable at once

    pool = WorkerPool(kernel, concurrency=1).start()
    try:
        wait_until(
            lambda: run_row(kernel, run_id).phase == "COMPLETED",
            timeout=20,
            what="released run completed by the second worker",
        )
    finally:
        pool.stop(drain_timeout_s=5)

    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.status.value, run.attempt, run.lease_owner) == ("succeeded", 2, None)
    assert [(s.step_id, s.attempt) for s in run.steps] == [
        ("first", 1),
        ("second", 1),
        ("third", 2),
    ]
    claims = rows(
        kernel,
        "SELECT attempt, worker_id FROM run_claims WHERE run_id = :id ORDER BY attempt",
        id=run_id,
    )
    assert [tuple(c) for c in claims] == [(1, worker_id), (2, pool.worker_id)]
    calls = Counter((c.step_id, c.attempt) for c in read_calls(log_dir))
    assert calls == {("first", 1): 1, ("second", 1): 1, ("third", 2): 1}
    assert_lifecycle_invariants(kernel)
