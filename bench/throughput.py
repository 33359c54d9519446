"""End-to-end throughput of runkernel: ``build_kernel`` + ``WorkerPool`` on a fresh
database, with runs submitted from client threads while the workers run.

    .venv/bin/python bench/throughput.py --db sqlite --runs 1000 --steps 3 --repeat 3

By default the workers run in the client's process (the embedded deployment). With
``--worker-processes N`` they run as N ``runkernel worker`` processes instead (the
scale-out deployment), each with ``--concurrency`` slots, and the client only submits.

Runs/s counts from the first submission to the moment every run is final. Latencies come
from the database: ``started_at_ms - created_at_ms`` and ``finished_at_ms - created_at_ms``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select

from databases import DbKind, fresh_database
from harness import Workload, build_measurement, main_for, submit_and_wait
from results import Measurement
from runkernel.adapters.db.tables import run_steps, runs
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.config import Settings
from runkernel.entrypoints.worker import WorkerPool
from workload import echo_chain_plan

BUDGET_USD = 1_000_000.0  # the agent's budget must never be what stops a run


WORKER_PROCESSES = 0  # set from --worker-processes


def measure_runkernel(
    db: DbKind, workload: Workload, postgres_url: str | None = None
) -> Measurement:
    """One measurement on a database created for it and dropped afterwards."""
    with fresh_database(db, postgres_url=postgres_url) as url:
        settings = Settings(database_url=url, worker_concurrency=workload.concurrency)
        kernel = build_kernel(settings)
        try:
            kernel.migrate()
            return _drive(kernel, db, workload, url)
        finally:
            kernel.close()


@contextmanager
def _workers(kernel: Kernel, url: str, concurrency: int) -> Iterator[None]:
    """Worker pools for the measurement: in this process, or ``runkernel worker``
    processes, each started and ready (it printed its id) before the first submission."""
    if WORKER_PROCESSES == 0:
        pool = WorkerPool(kernel, concurrency=concurrency).start()
        relay = _relay(kernel)
        try:
            yield
        finally:
            pool.stop(drain_timeout_s=5)
            if relay is not None:
                relay.stop()
        return
    command = [sys.executable, "-m", "runkernel", "worker", "--database-url", url]
    command += ["--concurrency", str(concurrency), "--log-level", "warning"]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for _ in range(WORKER_PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if "started" not in proc.stdout.readline():
                raise RuntimeError("a runkernel worker process did not start")
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def _relay(kernel: Kernel) -> Any:
    """The outbox relay, as ``serve`` runs it, so event publishing is part of the cost
    (kernels before the governance issue have none)."""
    try:
        from runkernel.entrypoints.background import BackgroundServices
    except ImportError:
        return None
    return BackgroundServices(kernel, reconciler=False).start()


def _drive(kernel: Kernel, db: DbKind, workload: Workload, url: str) -> Measurement:
    created = kernel.tenancy.create_tenant("bench")
    principal = kernel.tenancy.authenticate(created.api_key)
    # Unlimited concurrency: the bench measures throughput, not the agent's cap.
    agent = kernel.tenancy.create_agent(
        principal, "bench-agent", BUDGET_USD, max_concurrent_runs=None
    )
    plan = echo_chain_plan(workload.steps)

    def submit() -> object:
        return kernel.runs.submit(principal, agent_id=agent.id, plan=plan)

    with _workers(kernel, url, workload.concurrency):
        span = submit_and_wait(workload, submit, lambda: _final_count(kernel) >= workload.runs)
    with kernel.db.engine.connect() as conn:
        timings = conn.execute(
            select(runs.c.created_at_ms, runs.c.started_at_ms, runs.c.finished_at_ms)
        ).all()
        succeeded = conn.execute(_succeeded_query(workload.steps)).scalar_one()
    return build_measurement(
        "runkernel", db, workload, [tuple(t) for t in timings], span=span, succeeded=succeeded
    )


def _final_count(kernel: Kernel) -> int:
    query = select(func.count()).select_from(runs).where(runs.c.finished_at_ms.is_not(None))
    with kernel.db.engine.connect() as conn:
        count: int = conn.execute(query).scalar_one()
    return count


def _succeeded_query(steps: int) -> Any:
    """Runs that succeeded with every one of their steps recorded as succeeded."""
    succeeded_steps = (
        select(func.count())
        .select_from(run_steps)
        .where(run_steps.c.run_id == runs.c.id, run_steps.c.status == "succeeded")
        .scalar_subquery()
    )
    return (
        select(func.count())
        .select_from(runs)
        .where(runs.c.status == "succeeded", succeeded_steps == steps)
    )


def main(argv: Sequence[str] | None = None) -> int:
    global WORKER_PROCESSES
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--worker-processes", type=int, default=0)
    known, rest = extra.parse_known_args(argv)
    WORKER_PROCESSES = known.worker_processes
    return main_for(measure_runkernel, __doc__.split("\n\n")[0], rest)


if __name__ == "__main__":
    sys.exit(main())
