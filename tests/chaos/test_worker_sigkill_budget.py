"""Budgets hold when workers die mid-step (issue 7 acceptance, DESIGN invariant 7): two
worker processes running four runs of one agent are SIGKILLed while every run is inside
its second step, holding that step's reservation. Once another worker takes the expired
leases over, the dead reservations come back, every run completes, and when all are final
nothing is held — agents.reserved_micros and every runs.reserved_micros are 0 — the agent
has spent exactly the sum of the runs' costs, and no more than its budget.

The budget is tight on purpose: it fits the four runs' reservations once, not twice, so
the runs complete only if the takeover released what the dead workers held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings
from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.worker import WorkerPool
from support.skills import BLOCK_SKILL, LOG_SKILL, build_registry
from support.workers import WorkerProcess, assert_lifecycle_invariants, rows, run_row, wait_until

pytestmark = pytest.mark.slow

RUNS = 4
DEAD_LEASE_S = 2.0
STEP_RESERVE = 10_000  # micros: each step declares estimated_cost_usd 0.01
BUDGET_USD = "0.05"  # 50 000 micros: one round of four 10 000-micro reservations, not two


def _plan(marker: Path) -> dict[str, Any]:
    """Three steps, each reserving 10 000 micros; the second blocks in attempt 1."""
    return {
        "steps": [
            {
                "step_id": "first",
                "skill": LOG_SKILL,
                "params": {"n": 1},
                "estimated_cost_usd": 0.01,
            },
            {
                "step_id": "second",
                "skill": BLOCK_SKILL,
                "params": {"marker": str(marker), "sleep_s": 600, "block_attempt": 1},
                "estimated_cost_usd": 0.01,
            },
            {
                "step_id": "third",
                "skill": LOG_SKILL,
                "params": {"n": 3},
                "estimated_cost_usd": 0.01,
            },
        ]
    }


def test_reservations_of_killed_workers_come_back_and_spend_stays_within_budget(
    database_url: str, tmp_path: Path
) -> None:
    log_dir = tmp_path / "calls"
    kernel = build_kernel(make_settings(database_url), skills=build_registry(log_dir))
    kernel.migrate()
    try:
        created = kernel.tenancy.create_tenant("sigkill-budget")
        principal = kernel.tenancy.authenticate(created.api_key)
        agent = kernel.tenancy.create_agent(principal, "tight", BUDGET_USD)
        workers = [
            WorkerProcess(database_url, log_dir, tmp_path, concurrency=2, lease_s=DEAD_LEASE_S)
            for _ in range(2)
        ]
        markers = [tmp_path / f"blocked-{i}" for i in range(RUNS)]
        try:
            dead = {w.wait_ready() for w in workers}
            run_ids = [
                kernel.runs.submit(principal, agent_id=agent.id, plan=_plan(m)).run.id
                for m in markers
            ]
            wait_until(
                lambda: all(m.exists() for m in markers), timeout=30, what="every run in step 2"
            )
            for w in workers:
                w.kill()
            assert [w.wait(timeout=10) for w in workers] == [-9, -9]
        finally:
            for w in workers:
                w.ensure_dead()

        # Killed mid-step: each run holds its second step's reservation, and the agent holds
        # those plus the recorded cost of each run's first step.
        held = [run_row(kernel, r) for r in run_ids]
        assert {(h.status, h.next_step, h.reserved_micros) for h in held} == {
            ("running", 1, STEP_RESERVE)
        }
        assert {h.lease_owner for h in held} <= dead
        (before,) = rows(kernel, "SELECT * FROM agents WHERE id = :id", id=agent.id)
        first_costs = sum(h.cost_micros for h in held)
        assert (before.spent_micros, before.reserved_micros) == (
            0,
            first_costs + RUNS * STEP_RESERVE,
        )

        second = build_kernel(
            make_settings(database_url, lease_s=1.0, poll_interval_s=0.1),
            skills=build_registry(log_dir),
        )
        pool = WorkerPool(second, concurrency=RUNS).start()
        try:
            wait_until(
                lambda: all(run_row(kernel, r).finished_at_ms is not None for r in run_ids),
                timeout=60,
                what="every run final",
            )
        finally:
            pool.stop(drain_timeout_s=5)
            second.close()

        final = [run_row(kernel, r) for r in run_ids]
        assert {(f.status, f.attempt, f.reserved_micros) for f in final} == {("succeeded", 2, 0)}
        (after,) = rows(kernel, "SELECT * FROM agents WHERE id = :id", id=agent.id)
        assert after.reserved_micros == 0
        assert after.spent_micros == sum(f.cost_micros for f in final)
        assert after.spent_micros <= after.budget_micros
        assert after.spent_micros > 0
        assert_lifecycle_invariants(kernel)
    finally:
        kernel.close()
