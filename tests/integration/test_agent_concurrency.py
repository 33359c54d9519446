"""An agent's max_concurrent_runs: never more of its runs execute at once; the others
wait queued (never refused) and are claimed as the running ones stop, however many
workers claim at once (PostgreSQL: several pools; SQLite: one writer at a time)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import make_settings, make_tenant
from runkernel.adapters.skills import SkillRegistry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import SkillContext
from runkernel.entrypoints.worker import WorkerPool
from support.workers import rows

LIMIT = 2
RUNS = 24
PLAN = {"steps": [{"step_id": "probe", "skill": "probe", "params": {}}]}
LEASE_MS = 30_000


class Probe:
    """A skill that records how many runs of each tenant run it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def __call__(self, params: dict[str, Any], context: SkillContext) -> Any:
        with self._lock:
            self.active[context.tenant_id] += 1
            self.most[context.tenant_id] = max(
                self.most[context.tenant_id], self.active[context.tenant_id]
            )
        time.sleep(0.02)  # overlap, so that a claim past the limit would be seen
        with self._lock:
            self.active[context.tenant_id] -= 1
        return {"ok": True}


@pytest.fixture
def probed(database_url: str) -> Iterator[tuple[Kernel, Probe]]:
    probe = Probe()
    registry = SkillRegistry()
    registry.register("probe", probe)
    kernel = build_kernel(make_settings(database_url, lease_s=30.0), skills=registry)
    kernel.migrate()
    yield kernel, probe
    kernel.close()


def test_no_more_than_max_concurrent_runs_of_an_agent_execute_at_once(
    probed: tuple[Kernel, Probe],
) -> None:
    kernel, probe = probed
    limited = make_tenant(kernel)
    kernel.tenancy.change_agent(limited.principal, limited.agent.id, max_concurrent_runs=LIMIT)
    free = make_tenant(kernel)
    kernel.tenancy.change_agent(free.principal, free.agent.id, max_concurrent_runs=None)
    submitted = [
        (t, kernel.runs.submit(t.principal, agent_id=t.agent.id, plan=PLAN).run.id)
        for _ in range(RUNS)
        for t in (limited, free)
    ]
    pools = [WorkerPool(kernel, concurrency=8).start() for _ in range(3)]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(kernel.runs.get(t.principal, rid).finished_at_ms for t, rid in submitted):
                break
            time.sleep(0.1)
    finally:
        for pool in pools:
            pool.stop()
    runs = [kernel.runs.get(t.principal, rid) for t, rid in submitted]
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)  # queued, never refused
    assert probe.most[limited.principal.tenant_id] == LIMIT
    assert probe.most[free.principal.tenant_id] > LIMIT  # the other agent is not held back


def test_a_claim_starts_only_as_many_as_the_agent_has_room_for(
    probed: tuple[Kernel, Probe],
) -> None:
    kernel, _ = probed
    limited = make_tenant(kernel)
    kernel.tenancy.change_agent(limited.principal, limited.agent.id, max_concurrent_runs=3)
    free = make_tenant(kernel)
    kernel.tenancy.change_agent(free.principal, free.agent.id, max_concurrent_runs=None)
    for t in (limited, free):  # the limited agent's runs are the oldest
        for _ in range(5):
            kernel.runs.submit(t.principal, agent_id=t.agent.id, plan=PLAN)
    now = kernel.clock.now_ms()

    def claim(worker: str, limit: int) -> Counter[str]:
        with kernel.uow() as uow:
            claimed = uow.runs.claim(worker, limit, now, LEASE_MS)
            uow.commit()
        return Counter(r.agent_id for r in claimed)

    assert claim("w1", 2) == Counter({limited.agent.id: 2})  # oldest first, both fit
    assert claim("w2", 20) == Counter({limited.agent.id: 1, free.agent.id: 5})
    assert claim("w3", 20) == Counter()  # the limited agent's two others wait queued
    queued = rows(
        kernel,
        "SELECT id FROM runs WHERE agent_id = :a AND status = 'queued'",
        a=limited.agent.id,
    )
    assert len(queued) == 2
    # Raised, the next claim starts them.
    kernel.tenancy.change_agent(limited.principal, limited.agent.id, max_concurrent_runs=5)
    assert claim("w4", 20) == Counter({limited.agent.id: 2})
