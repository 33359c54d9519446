"""DESIGN invariant 6 under load: 8 concurrent workers — two OS processes of three threads
each plus an in-process pool of two — consume 2,000 runs; the claim log and the skill call
log prove that every run was claimed once and every step executed once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import make_settings, make_tenant
from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.worker import WorkerPool
from support.skills import build_registry, log_plan, read_calls
from support.workers import WorkerProcess, assert_lifecycle_invariants, rows, wait_until

RUNS = 2_000
STEPS = 2


@pytest.mark.slow
def test_two_thousand_runs_on_eight_workers_run_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    log_dir = tmp_path / "calls"
    kernel = build_kernel(
        make_settings(database_url, worker_concurrency=2), skills=build_registry(log_dir)
    )
    kernel.migrate()
    processes: list[WorkerProcess] = []
    pool: WorkerPool | None = None
    try:
        tenant = make_tenant(kernel, budget_usd=1_000.0)
        processes = [
            WorkerProcess(database_url, log_dir, tmp_path, concurrency=3, lease_s=30)
            for _ in range(2)
        ]
        process_ids = [p.wait_ready() for p in processes]
        pool = WorkerPool(kernel, concurrency=2).start()
        pool_id = pool.worker_id

        started = time.monotonic()
        run_ids = [
            kernel.runs.submit(
                tenant.principal, agent_id=tenant.agent.id, plan=log_plan(STEPS)
            ).run.id
            for _ in range(RUNS)
        ]

        def all_final() -> bool:
            (open_runs,) = rows(
                kernel, "SELECT COUNT(*) FROM runs WHERE phase NOT IN ('COMPLETED', 'FAILED')"
            )[0]
            return open_runs == 0

        wait_until(all_final, timeout=110, interval=0.25, what="all runs final")
        elapsed = time.monotonic() - started
        for p in processes:
            p.terminate()
        pool.stop(drain_timeout_s=5)
        pool = None
        for p in processes:
            assert p.wait(timeout=20) == 0, p.output()
    finally:
        if pool is not None:
            pool.stop(drain_timeout_s=0)
        for p in processes:
            p.ensure_dead()
        kernel.close()

    outcomes = Counter(
        (r.phase, r.status, r.attempt, r.next_step, r.lease_owner)
        for r in rows(kernel, "SELECT * FROM runs")
    )
    assert outcomes == {("COMPLETED", "succeeded", 1, STEPS, None): RUNS}

    claims = rows(kernel, "SELECT run_id, attempt, worker_id FROM run_claims")
    assert len(claims) == RUNS
    assert {c.run_id for c in claims} == set(run_ids)
    assert {c.attempt for c in claims} == {1}
    by_worker = Counter(c.worker_id for c in claims)
    assert set(by_worker) == {*process_ids, pool_id}, by_worker  # every worker took a share

    calls = read_calls(log_dir)
    per_step = Counter((c.run_id, c.step_id) for c in calls)
    assert len(per_step) == RUNS * STEPS
    assert set(per_step.values()) == {1}, [k for k, n in per_step.items() if n > 1][:5]
    assert {c.attempt for c in calls} == {1}
    assert len({c.pid for c in calls}) == 3  # two worker processes and this one

    stored_steps = Counter(
        (s.run_id, s.step_index)
        for s in rows(kernel, "SELECT run_id, step_index, attempt FROM run_steps")
    )
    assert len(stored_steps) == RUNS * STEPS and set(stored_steps.values()) == {1}

    checked = assert_lifecycle_invariants(kernel)
    # created, authorized, claimed, governance check, finalizing, completed
    assert checked == RUNS * 6
    print(f"\n{database_url.split(':')[0]}: {RUNS} runs final in {elapsed:.1f} s")
