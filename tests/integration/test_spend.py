"""An agent pays for a run exactly once, when the run is final, whatever its outcome."""

from __future__ import annotations

import time
from typing import Any

from conftest import ECHO_PLAN, TenantContext
from runkernel.bootstrap import Kernel
from runkernel.entrypoints.worker import WorkerPool

FAILING_PLAN = {
    "steps": [
        ECHO_PLAN["steps"][0],
        # Refused by the egress guard (loopback): the step fails after the first was paid for.
        {
            "step_id": "down",
            "skill": "http.request",
            "params": {"method": "GET", "url": "http://127.0.0.1:1/"},
        },
    ]
}


def _wait_final(kernel: Kernel, tenant: TenantContext, run_ids: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = [kernel.runs.get(tenant.principal, rid) for rid in run_ids]
        if all(r.finished_at_ms for r in runs):
            return
        time.sleep(0.05)
    raise AssertionError("runs did not finish")


def test_agent_spend_is_the_sum_of_its_final_runs(kernel: Kernel, tenant: TenantContext) -> None:
    def submit(plan: dict[str, Any]) -> str:
        return kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id

    ok = [submit(ECHO_PLAN) for _ in range(5)]
    failed = submit(FAILING_PLAN)
    pool = WorkerPool(kernel, concurrency=4).start()
    try:
        _wait_final(kernel, tenant, [*ok, failed])
    finally:
        pool.stop()
    runs = [kernel.runs.get(tenant.principal, rid) for rid in ok]
    assert all(r.status.value == "succeeded" for r in runs)
    per_run = {r.cost_micros for r in runs}
    assert len(per_run) == 1 and per_run.pop() > 0  # echo-1 is deterministic and priced
    agent = kernel.tenancy.get_agent(tenant.principal, tenant.agent.id)
    assert agent is not None
    failure = kernel.runs.get(tenant.principal, failed)
    assert failure.status.value == "failed" and failure.cost_micros > 0
    assert agent.spent_micros == sum(r.cost_micros for r in runs) + failure.cost_micros
    # Each run's cost is the sum of its steps: nothing settled twice or lost.
    assert all(r.cost_micros == sum(s.cost_micros for s in r.steps) for r in runs)
