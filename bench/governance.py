"""What mid-run governance costs: runs/s with budgets and checks on, as a ratio of the same
runs with them off, in one invocation on the same machine.

    .venv/bin/python bench/governance.py --db postgres --runs 640 --agents 1 --repeat 3
    .venv/bin/python bench/governance.py --db sqlite   --runs 640 --agents 64 --repeat 3

``on`` is the deployment default: every step reserves its worst case against the run, the
agent and the tenant's month before the call and settles after it, and the mid-run policy
checker runs before every step. ``off`` is the counterfactual kernel without them: the
checker disabled (``RUNKERNEL_MID_RUN_CHECKS=false``) and every skill priced at nothing
beforehand, so no step reserves (a kernel that governs only at the run's two ends). The
agents get budgets no run reaches and no concurrency cap, so both modes do the same work:
64 runs in flight (``--concurrency``) of ONE agent (``--agents 1``, the hot-row case) or
spread over 64 agents. The two modes alternate, each on a fresh database, and the script
prints every measurement, the medians and the ratio on/off (target ≥ 0.8).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from databases import DB_KINDS, DbKind, default_postgres_url, fresh_database
from harness import Workload, build_measurement, submit_and_wait
from results import Measurement
from runkernel.adapters.db.tables import runs
from runkernel.adapters.skills import SkillRegistry, build_default_registry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.config import Settings
from runkernel.entrypoints.worker import WorkerPool
from throughput import _relay, _succeeded_query
from workload import echo_chain_plan

BUDGET_USD = 1_000_000.0  # no run reaches it: the bench measures the checks, not refusals
MODES = ("on", "off")


class _Unpriced(SkillRegistry):
    """The registry with every skill's worst case unknown: no step reserves anything."""

    def __init__(self, inner: SkillRegistry) -> None:
        self.__dict__.update(inner.__dict__)

    def estimate(self, name: str, params: Any) -> int | None:
        return None


def measure(
    mode: str, db: DbKind, workload: Workload, agents: int, postgres_url: str
) -> Measurement:
    with fresh_database(db, postgres_url=postgres_url) as url:
        settings = Settings(
            database_url=url,
            worker_concurrency=workload.concurrency,
            mid_run_checks=mode == "on",
            default_step_cost_usd=0,
        )
        registry = build_default_registry(settings)
        skills = registry if mode == "on" else _Unpriced(registry)
        kernel = build_kernel(settings, skills=skills)
        try:
            kernel.migrate()
            return _drive(kernel, mode, db, workload, agents)
        finally:
            kernel.close()


def _drive(kernel: Kernel, mode: str, db: DbKind, workload: Workload, agents: int) -> Measurement:
    created = kernel.tenancy.create_tenant("bench")
    principal = kernel.tenancy.authenticate(created.api_key)
    agent_ids = [
        kernel.tenancy.create_agent(
            principal, f"bench-agent-{i}", BUDGET_USD, max_concurrent_runs=None
        ).id
        for i in range(agents)
    ]
    plan = echo_chain_plan(workload.steps)
    next_agent = itertools.cycle(agent_ids)
    lock = threading.Lock()

    def submit() -> object:
        with lock:
            agent_id = next(next_agent)
        return kernel.runs.submit(principal, agent_id=agent_id, plan=plan)

    pool = WorkerPool(kernel, concurrency=workload.concurrency).start()
    relay = _relay(kernel)
    try:
        span = submit_and_wait(workload, submit, lambda: _final(kernel) >= workload.runs)
    finally:
        pool.stop(drain_timeout_s=5)
        relay.stop()
    with kernel.db.engine.connect() as conn:
        timings = conn.execute(
            select(runs.c.created_at_ms, runs.c.started_at_ms, runs.c.finished_at_ms)
        ).all()
        succeeded = conn.execute(_succeeded_query(workload.steps)).scalar_one()
    measured = build_measurement(
        "runkernel", db, workload, [tuple(t) for t in timings], span=span, succeeded=succeeded
    )
    return dataclasses.replace(measured, system=f"gov-{mode}")


def _final(kernel: Kernel) -> int:
    query = select(func.count()).select_from(runs).where(runs.c.finished_at_ms.is_not(None))
    with kernel.db.engine.connect() as conn:
        count: int = conn.execute(query).scalar_one()
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=DB_KINDS, default="sqlite")
    parser.add_argument("--runs", type=int, default=640)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64, help="runs executed at once")
    parser.add_argument("--agents", type=int, default=1, help="agents the runs are spread over")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=default_postgres_url())
    args = parser.parse_args(argv)
    workload = Workload(args.runs, args.steps, args.concurrency)
    figures: dict[str, list[Measurement]] = {mode: [] for mode in MODES}
    for index in range(1, args.repeat + 1):
        for mode in MODES:  # alternating, so drifting load falls on both
            m = measure(mode, args.db, workload, args.agents, args.postgres_url)
            figures[mode].append(m)
            print(m.line(f"#{index}"), flush=True)
    medians = {mode: statistics.median(m.runs_per_s for m in figures[mode]) for mode in MODES}
    ratio = medians["on"] / medians["off"]
    print(
        f"{args.db}: {args.agents} agent(s), {args.concurrency} in flight, {args.steps} steps:"
        f" on {medians['on']:.1f} runs/s, off {medians['off']:.1f} runs/s,"
        f" ratio on/off {ratio:.2f} (median of {args.repeat})"
    )
    failed = [m for ms in figures.values() for m in ms if not m.ok]
    if failed:
        print("error: not every run succeeded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
