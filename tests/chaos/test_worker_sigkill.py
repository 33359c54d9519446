"""A worker process killed with SIGKILL mid-run loses nothing: once its lease expires the
run is claimed again (attempt 2), resumes after the last completed step, and completes —
no completed step runs twice. With ``max_attempts=1`` the reclaimed run fails instead."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
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

DEAD_LEASE_S = 2.0  # the killed worker's lease: it expires about 2 s after the kill


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@dataclass
class Killed:
    kernel: Kernel
    tenant: TenantContext
    run_id: str
    dead_worker: str
    dead_lease_expires_at_ms: int


def _kill_mid_run(database_url: str, tmp_path: Path, log_dir: Path) -> Killed:
    """Submit the blocking plan, let a worker process reach step 2, SIGKILL it."""
    kernel = build_kernel(make_settings(database_url), skills=build_registry(log_dir))
    kernel.migrate()
    tenant = make_tenant(kernel)
    marker = tmp_path / "blocked"
    worker = WorkerProcess(database_url, log_dir, tmp_path, concurrency=1, lease_s=DEAD_LEASE_S)
    try:
        dead_id = worker.wait_ready()
        run_id = kernel.runs.submit(
            tenant.principal, agent_id=tenant.agent.id, plan=blocking_plan(marker)
        ).run.id
        wait_until(marker.exists, timeout=30, what="step 2 to block")
        worker.kill()
        assert worker.wait(timeout=10) == -9
    finally:
        worker.ensure_dead()
    row = run_row(kernel, run_id)
    # Killed between steps 1 and 3: step 1 is stored, the lease is still the dead worker's.
    assert (row.phase, row.status, row.attempt, row.next_step, row.lease_owner) == (
        "EXECUTING",
        "running",
        1,
        1,
        dead_id,
    )
    return Killed(kernel, tenant, run_id, dead_id, row.lease_expires_at_ms)


@pytest.fixture
def killed(database_url: str, tmp_path: Path, log_dir: Path) -> Iterator[Killed]:
    found = _kill_mid_run(database_url, tmp_path, log_dir)
    yield found
    found.kernel.close()


def _second_worker(database_url: str, log_dir: Path, **overrides: object) -> Kernel:
    settings = make_settings(database_url, lease_s=1.0, poll_interval_s=0.1, **overrides)
    return build_kernel(settings, skills=build_registry(log_dir))


def test_killed_run_is_reclaimed_after_lease_expiry_and_resumes(
    database_url: str, killed: Killed, log_dir: Path
) -> None:
    kernel, tenant, run_id, dead_id = (
        killed.kernel,
        killed.tenant,
        killed.run_id,
        killed.dead_worker,
    )
    second = _second_worker(database_url, log_dir)
    pool = WorkerPool(second, concurrency=2).start()
    try:
        wait_until(
            lambda: run_row(kernel, run_id).phase == "COMPLETED",
            timeout=30,
            what="reclaimed run completed",
        )
    finally:
        pool.stop(drain_timeout_s=5)
        second.close()

    claims = rows(kernel, "SELECT * FROM run_claims WHERE run_id = :id ORDER BY attempt", id=run_id)
    assert [(c.attempt, c.worker_id) for c in claims] == [(1, dead_id), (2, pool.worker_id)]
    # Reclaimed only once the dead worker's last renewed lease had run out.
    assert claims[1].claimed_at_ms > killed.dead_lease_expires_at_ms

    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.phase.value, run.status.value, run.attempt, run.lease_owner) == (
        "COMPLETED",
        "succeeded",
        2,
        None,
    )
    assert [(s.step_index, s.step_id, s.attempt) for s in run.steps] == [
        (0, "first", 1),
        (1, "second", 2),
        (2, "third", 2),
    ]
    assert run.output == {"step": "third", "n": 3}
    reclaimed = [t for t in run.transitions if "reclaimed" in t.reason]
    assert len(reclaimed) == 1
    assert reclaimed[0].reason == f"lease expired; reclaimed by {pool.worker_id} (attempt 2)"

    calls = Counter((c.step_id, c.attempt) for c in read_calls(log_dir))
    # Step 1 completed before the kill and never ran again; step 2 was cut off in attempt 1
    # and redone in attempt 2; step 3 ran once.
    assert calls == {("first", 1): 1, ("second", 1): 1, ("second", 2): 1, ("third", 2): 1}
    assert_lifecycle_invariants(kernel)


def test_reclaimed_run_past_max_attempts_fails(
    database_url: str, killed: Killed, log_dir: Path
) -> None:
    kernel, tenant, run_id, dead_id = (
        killed.kernel,
        killed.tenant,
        killed.run_id,
        killed.dead_worker,
    )
    second = _second_worker(database_url, log_dir, max_attempts=1)
    pool = WorkerPool(second, concurrency=2).start()
    try:
        wait_until(
            lambda: run_row(kernel, run_id).phase == "FAILED",
            timeout=30,
            what="run failed",
        )
    finally:
        pool.stop(drain_timeout_s=5)
        second.close()

    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.phase.value, run.status.value, run.error_code, run.attempt) == (
        "FAILED",
        "failed",
        "max_attempts_exceeded",
        2,
    )
    assert run.lease_owner is None
    assert [(s.step_id, s.attempt) for s in run.steps] == [("first", 1)]
    claims = rows(kernel, "SELECT * FROM run_claims WHERE run_id = :id ORDER BY attempt", id=run_id)
    assert [(c.attempt, c.worker_id) for c in claims] == [(1, dead_id), (2, pool.worker_id)]
    calls = Counter((c.step_id, c.attempt) for c in read_calls(log_dir))
    assert calls == {("first", 1): 1, ("second", 1): 1}  # nothing ran in attempt 2
    assert_lifecycle_invariants(kernel)
