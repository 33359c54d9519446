"""Cancelling: a queued run is cancelled at once and never claimed; a running run stops at
its next step boundary with status cancelled."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.runs import Phase, RunStatus
from runkernel.domain.skills import SkillContext
from runkernel.entrypoints.worker import WorkerPool
from runkernel.errors import ConflictError
from support.skills import LOG_SKILL, build_registry, log_plan, read_calls
from support.workers import assert_lifecycle_invariants, rows, run_row, wait_until

GATE_SKILL = "test.gate"


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, params: dict[str, Any], context: SkillContext) -> dict[str, str]:
        self.entered.set()
        assert self.open.wait(30), "gate never opened"
        return {"gate": "passed"}


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@pytest.fixture
def gated_kernel(database_url: str, log_dir: Path, gate: Gate) -> Iterator[Kernel]:
    registry = build_registry(log_dir)
    registry.register(GATE_SKILL, gate)
    k = build_kernel(make_settings(database_url), skills=registry)
    k.migrate()
    yield k
    gate.open.set()
    k.close()


def test_cancelling_a_queued_run_fails_it_at_once_and_no_worker_claims_it(
    gated_kernel: Kernel, log_dir: Path
) -> None:
    kernel = gated_kernel
    tenant = make_tenant(kernel)
    queued = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(2)).run

    cancelled = kernel.runs.cancel(tenant.principal, queued.id)

    assert (cancelled.phase, cancelled.status) == (Phase.FAILED, RunStatus.CANCELLED)
    assert cancelled.error_code == "cancelled"
    assert cancelled.finished_at_ms is not None
    last = cancelled.transitions[-1]
    assert (last.from_phase, last.from_status, last.to_phase, last.to_status) == (
        Phase.AUTHORIZED,
        RunStatus.QUEUED,
        Phase.FAILED,
        RunStatus.CANCELLED,
    )
    with pytest.raises(ConflictError) as info:
        kernel.runs.cancel(tenant.principal, queued.id)
    assert info.value.code == "run_already_final"

    # A worker then serves a later run but never the cancelled one.
    pool = WorkerPool(kernel, concurrency=2).start()
    try:
        later = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1))
        wait_until(
            lambda: run_row(kernel, later.run.id).phase == "COMPLETED",
            timeout=20,
            what="later run completed",
        )
    finally:
        pool.stop(drain_timeout_s=5)
    assert rows(kernel, "SELECT * FROM run_claims WHERE run_id = :id", id=queued.id) == []
    assert {c.run_id for c in read_calls(log_dir)} == {later.run.id}
    row = run_row(kernel, queued.id)
    assert (row.phase, row.status, row.attempt) == ("FAILED", "cancelled", 0)
    assert_lifecycle_invariants(kernel)


def test_cancelling_a_running_run_stops_it_at_the_next_step_boundary(
    gated_kernel: Kernel, gate: Gate, log_dir: Path
) -> None:
    kernel = gated_kernel
    tenant = make_tenant(kernel)
    plan = {
        "steps": [
            {"step_id": "before", "skill": LOG_SKILL, "params": {}},
            {"step_id": "gate", "skill": GATE_SKILL, "params": {}},
            {"step_id": "after", "skill": LOG_SKILL, "params": {}},
        ]
    }
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    pool = WorkerPool(kernel, concurrency=1).start()
    try:
        assert gate.entered.wait(20), "the run never reached the gated step"
        requested = kernel.runs.cancel(tenant.principal, run_id)
        assert (requested.phase, requested.status) == (Phase.EXECUTING, RunStatus.RUNNING)
        assert run_row(kernel, run_id).cancel_requested
        gate.open.set()
        wait_until(
            lambda: run_row(kernel, run_id).phase == "FAILED", timeout=20, what="run stopped"
        )
    finally:
        gate.open.set()
        pool.stop(drain_timeout_s=5)

    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.phase, run.status, run.error_code) == (
        Phase.FAILED,
        RunStatus.CANCELLED,
        "cancelled",
    )
    assert run.lease_owner is None
    # The step in flight finished and was recorded; the next one never started.
    assert [(s.step_id, s.status) for s in run.steps] == [
        ("before", "succeeded"),
        ("gate", "succeeded"),
    ]
    assert [c.step_id for c in read_calls(log_dir)] == ["before"]
    assert run.transitions[-1].to_status is RunStatus.CANCELLED
    assert_lifecycle_invariants(kernel)
