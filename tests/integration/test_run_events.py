"""Events of mid-run governance through the outbox, on both databases: ``run.cancelled``
once per cancelled run (queued, or stopped at a step boundary), ``run.pause_expiring``
once per pause expiry and durable across a restart, ``threshold.exceeded`` when a step
crosses 80 % of a budget — once per run and budget, never at completion."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.pauses import PauseReason, TimeoutBehaviour
from runkernel.domain.records import Claim, RunBudget, StepRecord
from runkernel.domain.skills import SkillContext, Usage
from runkernel.entrypoints.worker import WorkerPool
from runkernel.services.thresholds import tell_crossings
from support.skills import LOG_SKILL, build_registry, log_plan
from support.workers import assert_lifecycle_invariants, rows, run_row, wait_until

GATE_SKILL = "test.gate"
SLA_S = 60.0
NOTIFY_BEFORE_S = 10.0


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, params: dict[str, Any], context: SkillContext) -> dict[str, str]:
        self.entered.set()
        assert self.open.wait(30), "gate never opened"
        return {"gate": "passed"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def outbox(kernel: Kernel, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    found = rows(
        kernel, "SELECT topic, payload FROM outbox WHERE run_id = :r ORDER BY seq", r=run_id
    )
    return [
        (r.topic, json.loads(r.payload) if isinstance(r.payload, str) else r.payload) for r in found
    ]


def payloads(kernel: Kernel, run_id: str, topic: str) -> list[dict[str, Any]]:
    return [p for t, p in outbox(kernel, run_id) if t == topic]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.open.set()


@pytest.fixture
def worker_kernel(database_url: str, log_dir: Path, gate: Gate) -> Iterator[Kernel]:
    registry = build_registry(log_dir)
    registry.register(GATE_SKILL, gate)
    k = build_kernel(make_settings(database_url), skills=registry)
    k.migrate()
    yield k
    k.close()


def _run_to_the_end(kernel: Kernel, *run_ids: str) -> None:
    pool = WorkerPool(kernel, concurrency=2).start()
    try:
        for run_id in run_ids:
            wait_until(
                lambda run_id=run_id: run_row(kernel, run_id).finished_at_ms is not None,
                timeout=30,
                what=f"run {run_id} final",
            )
    finally:
        pool.stop(drain_timeout_s=5)


# -- run.cancelled ----------------------------------------------------------------------
def test_a_queued_run_cancelled_at_once_sends_run_cancelled_once(worker_kernel: Kernel) -> None:
    kernel = worker_kernel
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(2)).run.id
    kernel.runs.cancel(tenant.principal, run_id)
    topics = [t for t, _ in outbox(kernel, run_id)]
    assert topics.count("run.cancelled") == 1
    assert "run.failed" not in topics and "run.completed" not in topics
    assert topics[-1] == "run.cancelled"  # the verdict comes last
    (cancelled,) = payloads(kernel, run_id, "run.cancelled")
    assert (cancelled["status"], cancelled["error_code"]) == ("cancelled", "cancelled")


def test_a_running_run_stopped_at_a_step_boundary_sends_run_cancelled_once(
    worker_kernel: Kernel, gate: Gate
) -> None:
    kernel = worker_kernel
    tenant = make_tenant(kernel)
    plan = {
        "steps": [
            {"step_id": "gate", "skill": GATE_SKILL, "params": {}},
            {"step_id": "never", "skill": LOG_SKILL, "params": {}},
        ]
    }
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    pool = WorkerPool(kernel, concurrency=1).start()
    try:
        assert gate.entered.wait(20), "the run never reached its first step"
        kernel.runs.cancel(tenant.principal, run_id)
        gate.open.set()
        wait_until(
            lambda: run_row(kernel, run_id).status == "cancelled", timeout=20, what="cancelled"
        )
    finally:
        gate.open.set()
        pool.stop(drain_timeout_s=5)
    assert run_row(kernel, run_id).next_step == 1  # stopped before its second step
    topics = Counter(t for t, _ in outbox(kernel, run_id))
    assert (topics["run.cancelled"], topics["run.failed"], topics["run.completed"]) == (1, 0, 0)
    assert outbox(kernel, run_id)[-1][0] == "run.cancelled"
    assert_lifecycle_invariants(kernel)


# -- run.pause_expiring -----------------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _clocked_kernel(database_url: str, clock: FakeClock, log_dir: Path) -> Kernel:
    settings = make_settings(database_url, pause_sla_s=SLA_S, pause_notify_before_s=NOTIFY_BEFORE_S)
    return build_kernel(settings, clock=clock, skills=build_registry(log_dir))


def _paused(kernel: Kernel, tenant: TenantContext, on_timeout: TimeoutBehaviour) -> str:
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(2)).run
    with kernel.uow() as uow:
        (claimed,) = uow.runs.claim("worker-A", 10, kernel.clock.now_ms(), 5_000)
        uow.commit()
    kernel.pauses.pause_at_boundary(
        claimed,
        Claim.of(claimed, "worker-A"),
        PauseReason.POLICY_CHANGE,
        message="rule changed",
        on_timeout=on_timeout,
    )
    return run.id


def test_pause_expiring_is_sent_once_per_expiry_ahead_of_it_and_survives_a_restart(
    database_url: str, clock: FakeClock, log_dir: Path
) -> None:
    kernel = _clocked_kernel(database_url, clock, log_dir)
    kernel.migrate()
    tenant = make_tenant(kernel)
    run_id = _paused(kernel, tenant, TimeoutBehaviour.ESCALATE)
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    window_opens = pause.expires_at_ms - int(NOTIFY_BEFORE_S * 1000)

    clock.now = window_opens - 1
    assert kernel.pauses.check_timeouts() == 0
    assert payloads(kernel, run_id, "run.pause_expiring") == []
    clock.now = window_opens
    assert kernel.pauses.check_timeouts() == 0  # a notice is no timeout
    assert kernel.pauses.check_timeouts() == 0
    (notice,) = payloads(kernel, run_id, "run.pause_expiring")
    assert notice["expires_at_ms"] == pause.expires_at_ms
    assert (notice["expires_in_ms"], notice["on_timeout"]) == (
        int(NOTIFY_BEFORE_S * 1000),
        "ESCALATE",
    )
    assert notice["reason"] == "POLICY_CHANGE"
    kernel.close()

    # A restarted sweep neither repeats the notice nor misses the expiry's timeout.
    restarted = _clocked_kernel(database_url, clock, log_dir)
    try:
        clock.now = pause.expires_at_ms - 1
        assert restarted.pauses.check_timeouts() == 0
        assert len(payloads(restarted, run_id, "run.pause_expiring")) == 1
        clock.now = pause.expires_at_ms
        assert restarted.pauses.check_timeouts() == 1  # escalated: a longer SLA
        (longer,) = restarted.pauses.pauses(tenant.principal.tenant_id, run_id)
        assert longer.escalations == 1 and longer.expires_at_ms > pause.expires_at_ms
        clock.now = longer.expires_at_ms - int(NOTIFY_BEFORE_S * 1000)
        restarted.pauses.check_timeouts()
        restarted.pauses.check_timeouts()
        notices = payloads(restarted, run_id, "run.pause_expiring")
        assert [n["expires_at_ms"] for n in notices] == [pause.expires_at_ms, longer.expires_at_ms]
    finally:
        restarted.close()


def test_a_resumed_pause_gets_no_expiry_notice(
    database_url: str, clock: FakeClock, log_dir: Path
) -> None:
    kernel = _clocked_kernel(database_url, clock, log_dir)
    kernel.migrate()
    try:
        tenant = make_tenant(kernel)
        run_id = _paused(kernel, tenant, TimeoutBehaviour.TERMINATE)
        kernel.pauses.try_resume(tenant.principal, run_id)
        (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
        clock.now = pause.expires_at_ms - 1
        kernel.pauses.check_timeouts()
        assert payloads(kernel, run_id, "run.pause_expiring") == []
    finally:
        kernel.close()


# -- threshold.exceeded -----------------------------------------------------------------
def test_threshold_exceeded_on_crossing_once_per_run_and_budget(worker_kernel: Kernel) -> None:
    """test.log costs 1 micro and 2 tokens a step and reserves nothing, so the numbers are
    exact: 10 steps against max_steps 10 (crossed at step 8), max_tokens 25 (20 tokens at
    step 10), max_cost 12 micros (10 at step 10), and an agent budget of 20 micros that the
    first run takes to 50 % and the second past 80 % at its 6th step."""
    kernel = worker_kernel
    created = kernel.tenancy.create_tenant("thresholds")
    principal = kernel.tenancy.authenticate(created.api_key)
    agent = kernel.tenancy.create_agent(principal, "frugal", "0.00002")
    budget = RunBudget(max_cost_micros=12, max_tokens=25, max_steps=10)
    first = kernel.runs.submit(principal, agent_id=agent.id, plan=log_plan(10), budget=budget)
    _run_to_the_end(kernel, first.run.id)
    second = kernel.runs.submit(principal, agent_id=agent.id, plan=log_plan(10), budget=budget)
    _run_to_the_end(kernel, second.run.id)

    told = {
        run_id: {p["budget"]: p for p in payloads(kernel, run_id, "threshold.exceeded")}
        for run_id in (first.run.id, second.run.id)
    }
    for run_id in told:
        assert run_row(kernel, run_id).status == "succeeded"
        events = payloads(kernel, run_id, "threshold.exceeded")
        assert len(events) == len(told[run_id])  # once per budget
        assert told[run_id]["max_steps"] == {
            "run_id": run_id,
            "agent_id": agent.id,
            "budget": "max_steps",
            "ratio": 0.8,
            "used": 8,
            "limit": 10,
            "threshold": 0.8,
        }
        assert (told[run_id]["max_tokens"]["used"], told[run_id]["max_tokens"]["ratio"]) == (
            20,
            0.8,
        )
        assert told[run_id]["max_cost"]["used"] == 10
    assert "agent_budget" not in told[first.run.id]  # 10 of 20 micros
    agent_told = told[second.run.id]["agent_budget"]
    assert (agent_told["used"], agent_told["limit"], agent_told["ratio"]) == (16, 20, 0.8)
    crossed = run_row(kernel, second.run.id).thresholds_crossed
    stored = json.loads(crossed) if isinstance(crossed, str) else crossed
    assert stored == ["agent_budget", "max_cost", "max_steps", "max_tokens"]

    # Each event is written with the step that crossed, before the run's verdict.
    topics = [t for t, _ in outbox(kernel, second.run.id)]
    assert topics.index("threshold.exceeded") < topics.index("run.completed")


def test_a_run_stopped_by_its_budget_is_told_once_not_again_at_completion(
    worker_kernel: Kernel,
) -> None:
    kernel = worker_kernel
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(
        tenant.principal,
        agent_id=tenant.agent.id,
        plan=log_plan(3),
        budget=RunBudget(max_steps=2),
    ).run.id
    _run_to_the_end(kernel, run_id)
    row = run_row(kernel, run_id)
    assert (row.status, row.error_code, row.risk_level) == (
        "failed_policy",
        "budget_exceeded",
        "VIOLATED",
    )
    assert [p["budget"] for p in payloads(kernel, run_id, "threshold.exceeded")] == ["max_steps"]


def test_a_run_far_from_its_limits_sends_no_threshold_event(worker_kernel: Kernel) -> None:
    kernel = worker_kernel
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(
        tenant.principal,
        agent_id=tenant.agent.id,
        plan=log_plan(2),
        budget=RunBudget(max_steps=10, max_cost_micros=1_000),
    ).run.id
    _run_to_the_end(kernel, run_id)
    assert run_row(kernel, run_id).status == "succeeded"
    assert payloads(kernel, run_id, "threshold.exceeded") == []


def _step(run_id: str, index: int, cost: int, claim: Claim) -> StepRecord:
    return StepRecord(
        run_id=run_id,
        step_index=index,
        step_id=f"s{index}",
        skill=LOG_SKILL,
        status="succeeded",
        input={},
        output={},
        usage=Usage(),
        cost_micros=cost,
        duration_ms=1,
        error=None,
        attempt=claim.attempt,
        tries=1,
        finished_at_ms=1,
    )


def test_an_agent_budget_that_dips_and_crosses_again_is_told_once_per_run(
    worker_kernel: Kernel,
) -> None:
    """Another run's reservation lifts the agent over 80 % and then is released: the run
    that crossed is not told again when it crosses a second time."""
    kernel = worker_kernel
    created = kernel.tenancy.create_tenant("dips")
    principal = kernel.tenancy.authenticate(created.api_key)
    agent = kernel.tenancy.create_agent(principal, "shared", "0.0001")  # 100 micros
    for _ in range(2):
        kernel.runs.submit(principal, agent_id=agent.id, plan=log_plan(3))
    with kernel.uow() as uow:
        run_a, run_b = uow.runs.claim("worker-A", 10, kernel.clock.now_ms(), 60_000)
        uow.commit()
    claim_a, claim_b = Claim.of(run_a, "worker-A"), Claim.of(run_b, "worker-A")

    def record(run: Any, claim: Claim, index: int, cost: int, reserved: int = 0) -> list[str]:
        with kernel.uow() as uow:
            step = _step(run.id, index, cost, claim)
            recorded = uow.runs.record_step(claim, step, now_ms=1, reserved_micros=reserved)
            crossed = tell_crossings(uow, run, claim, step, recorded)
            uow.commit()
        return [c.budget for c in crossed]

    with kernel.uow() as uow:
        assert uow.runs.reserve(claim_b, 50)  # B holds 50 for its step in flight
        uow.commit()
    assert record(run_a, claim_a, 0, 35) == ["agent_budget"]  # 50 -> 85 of 100
    assert record(run_b, claim_b, 0, 0, reserved=50) == []  # B's reservation back: 35
    run_a = replace(run_a, cost_micros=35)
    assert record(run_a, claim_a, 1, 50) == []  # 35 -> 85 again: A was told already
    assert len(payloads(kernel, run_a.id, "threshold.exceeded")) == 1
    assert payloads(kernel, run_b.id, "threshold.exceeded") == []
