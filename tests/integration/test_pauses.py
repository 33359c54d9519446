"""Pause and resume, on both databases: a manual pause takes a running run out of its
worker at the next step boundary (lease and slot free); a resume is decided by the
pause's authorities, a refusal recorded; a resumed run continues on another worker from
its next step, without a new attempt; an expired pause does what its timeout says, also
after a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.pauses import PauseReason, TimeoutBehaviour
from runkernel.domain.records import Claim, Role, StepRecord
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import SkillContext, Usage
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.worker import WorkerPool
from runkernel.errors import ConflictError, PermissionDeniedError
from runkernel.services.executor import Execution
from support.governance_api import bearer
from support.skills import LOG_SKILL, build_registry, log_plan, read_calls
from support.workers import rows, run_row, wait_until

GATE_SKILL = "test.gate"
LEASE_MS = 5_000
SLA_S = 60.0


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
    k = build_kernel(make_settings(database_url, pause_sla_s=SLA_S), skills=registry)
    k.migrate()
    yield k
    gate.open.set()
    k.close()


def _user(kernel: Kernel, tenant: TenantContext) -> Any:
    key = kernel.tenancy.create_key(tenant.principal, Role.USER)
    return kernel.tenancy.authenticate(key.api_key)


def _finish_on_a_new_worker(kernel: Kernel, run_id: str) -> None:
    pool = WorkerPool(kernel, concurrency=1, worker_id="worker-B").start()
    try:
        wait_until(
            lambda: run_row(kernel, run_id).phase == "COMPLETED", timeout=20, what="resumed run"
        )
    finally:
        pool.stop(drain_timeout_s=5)


def test_a_manual_pause_frees_the_worker_and_a_resume_continues_from_the_next_step(
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
    with pytest.raises(ConflictError):  # queued: no worker to pause it, nothing to stop
        kernel.pauses.pause_run(tenant.principal, run_id)
    pool = WorkerPool(kernel, concurrency=1, worker_id="worker-A").start()
    try:
        assert gate.entered.wait(20), "the run never reached the gated step"
        requested = kernel.pauses.pause_run(tenant.principal, run_id)
        assert (requested.status, requested.pause_requested) == (RunStatus.RUNNING, True)
        gate.open.set()
        wait_until(
            lambda: run_row(kernel, run_id).status == "paused", timeout=20, what="run paused"
        )
        # The slot is free: the same one-slot worker takes the next run at once.
        other = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1))
        wait_until(
            lambda: run_row(kernel, other.run.id).phase == "COMPLETED",
            timeout=20,
            what="another run on the freed slot",
        )
    finally:
        gate.open.set()
        pool.stop(drain_timeout_s=5)
    row = run_row(kernel, run_id)
    assert (row.phase, row.lease_owner, row.lease_expires_at_ms) == ("EXECUTING", None, None)
    assert (row.pause_requested, row.next_step, row.attempt, row.claim_epoch) == (False, 2, 1, 1)
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.reason, pause.is_open) == (PauseReason.MANUAL_PAUSE, True)
    assert pause.paused_by == f"admin:{tenant.principal.key_id}"  # who asked, not the worker

    user = _user(kernel, tenant)
    waiting = kernel.pauses.try_resume(user, run_id, note="go on")  # manual: a user may
    assert (waiting.status, waiting.resume_requested_at_ms is not None) == (RunStatus.PAUSED, True)
    _finish_on_a_new_worker(kernel, run_id)

    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.attempt, run.claim_epoch, run.status) == (1, 2, RunStatus.SUCCEEDED)
    assert run.resume_requested_at_ms is None
    assert [s.step_id for s in run.steps] == ["before", "gate", "after"]
    calls = [(c.run_id, c.step_id) for c in read_calls(log_dir) if c.run_id == run_id]
    assert calls == [(run_id, "before"), (run_id, "after")]  # no step ran twice
    reasons = [t.reason for t in run.transitions]
    assert any(r.startswith(f"paused (MANUAL_PAUSE) by {pause.paused_by}") for r in reasons)
    assert "resumed; claimed by worker-B (attempt 1)" in reasons
    topics = [
        r.topic for r in rows(kernel, "SELECT topic FROM outbox WHERE run_id = :id", id=run_id)
    ]
    assert {"run.paused", "run.resumed"} <= set(topics)


def _paused_by_policy(
    kernel: Kernel, tenant: TenantContext, on_timeout: TimeoutBehaviour, steps: int = 2
) -> str:
    """A run claimed, one step done, then paused for a POLICY_CHANGE (admin or operator)."""
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(steps)).run
    with kernel.uow() as uow:
        (claimed,) = uow.runs.claim("worker-A", 10, kernel.clock.now_ms(), LEASE_MS)
        uow.commit()
    kernel.pauses.pause_at_boundary(
        claimed,
        Claim.of(claimed, "worker-A"),
        PauseReason.POLICY_CHANGE,
        message="rule changed",
        violations=("LIMIT_CHANGED",),
        on_timeout=on_timeout,
    )
    return run.id


def test_a_user_resume_of_an_admin_pause_is_refused_and_recorded_and_an_admin_resume_runs_it(
    gated_kernel: Kernel, log_dir: Path
) -> None:
    kernel = gated_kernel
    tenant = make_tenant(kernel)
    run_id = _paused_by_policy(kernel, tenant, TimeoutBehaviour.TERMINATE)
    user = _user(kernel, tenant)
    with pytest.raises(PermissionDeniedError, match="POLICY_CHANGE"):
        kernel.pauses.try_resume(user, run_id)
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.resume_attempts, pause.last_actor) == (1, f"user:{user.key_id}")
    assert [r.reason.value for r in pause.refusals] == ["not_allowed"]
    assert run_row(kernel, run_id).resume_requested_at_ms is None

    kernel.pauses.try_resume(tenant.principal, run_id, note="approved")
    with pytest.raises(ConflictError) as info:  # already resumed: nothing left to resume
        kernel.pauses.try_resume(tenant.principal, run_id)
    assert info.value.code == "resume_refused_not_paused"
    _finish_on_a_new_worker(kernel, run_id)
    row = run_row(kernel, run_id)
    assert (row.status, row.attempt, row.claim_epoch) == ("succeeded", 1, 2)
    assert [c.step_id for c in read_calls(log_dir) if c.run_id == run_id] == ["s0", "s1"]
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.resume_attempts, pause.outcome, pause.ended_by) == (
        2,
        "resumed",
        f"admin:{tenant.principal.key_id}",
    )


@pytest.fixture
def clocked(database_url: str, log_dir: Path) -> Iterator[tuple[Kernel, FakeClock]]:
    clock = FakeClock()
    settings = make_settings(database_url, pause_sla_s=SLA_S)
    k = build_kernel(settings, skills=build_registry(log_dir), clock=clock)
    k.migrate()
    yield k, clock
    k.close()


def test_expired_pauses_terminate_continue_or_escalate_also_after_a_restart(
    clocked: tuple[Kernel, FakeClock], database_url: str
) -> None:
    kernel, clock = clocked
    tenant = make_tenant(kernel)
    ends = {b: _paused_by_policy(kernel, tenant, b) for b in TimeoutBehaviour}
    clock.now += int(SLA_S * 1000) - 1
    assert kernel.pauses.check_timeouts() == 0  # within the SLA nothing happens
    kernel.close()

    clock.now += 1
    restarted = build_kernel(make_settings(database_url, pause_sla_s=SLA_S), clock=clock)
    try:
        assert restarted.pauses.check_timeouts() == 3
        assert restarted.pauses.check_timeouts() == 0  # each expiry is applied once
        terminated = run_row(restarted, ends[TimeoutBehaviour.TERMINATE])
        assert (terminated.phase, terminated.status, terminated.error_code) == (
            "FAILED",
            "failed_policy",
            "pause_expired",
        )
        incident_codes = {
            (r.run_id, r.error_code)
            for r in rows(restarted, "SELECT run_id, error_code FROM incidents")
        }
        assert (ends[TimeoutBehaviour.TERMINATE], "pause_expired") in incident_codes
        traces = rows(
            restarted,
            "SELECT status FROM traces WHERE run_id = :id",
            id=ends[TimeoutBehaviour.TERMINATE],
        )
        assert len(traces) == 1
        assert rows(
            restarted,
            "SELECT 1 FROM policy_evaluations WHERE run_id = :id",
            id=ends[TimeoutBehaviour.TERMINATE],
        )

        continued = run_row(restarted, ends[TimeoutBehaviour.CONTINUE])
        assert (continued.status, continued.resume_requested_at_ms) == ("paused", clock.now)

        escalated_id = ends[TimeoutBehaviour.ESCALATE]
        assert (escalated_id, "pause_escalated") in incident_codes
        assert run_row(restarted, escalated_id).status == "paused"
        (pause,) = restarted.pauses.pauses(tenant.principal.tenant_id, escalated_id)
        assert (pause.is_open, pause.escalations) == (True, 1)
        clock.now = pause.expires_at_ms  # its second expiry terminates it
        assert restarted.pauses.check_timeouts() == 1
        assert run_row(restarted, escalated_id).status == "failed_policy"
    finally:
        restarted.close()


def test_over_http_a_refused_resume_is_403_and_a_granted_one_waits_visibly_for_a_worker(
    gated_kernel: Kernel,
) -> None:
    kernel = gated_kernel
    tenant = make_tenant(kernel)
    run_id = _paused_by_policy(kernel, tenant, TimeoutBehaviour.TERMINATE)
    user_key = kernel.tenancy.create_key(tenant.principal, Role.USER).api_key
    with TestClient(create_app(kernel)) as client:
        refused = client.post(
            f"/api/v1/runs/{run_id}/resume", json={"note": "mine"}, headers=bearer(user_key)
        )
        assert refused.status_code == 403, refused.text
        assert "POLICY_CHANGE" in refused.json()["error"]["message"]
        admin = bearer(tenant.api_key)
        listed = client.get("/api/v1/runs?status=paused", headers=admin).json()["runs"]
        assert [(r["id"], r["waiting_for_worker"]) for r in listed] == [(run_id, False)]
        resumed = client.post(f"/api/v1/runs/{run_id}/resume", json={}, headers=admin)
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["status"], resumed.json()["waiting_for_worker"]) == ("paused", True)
        listed = client.get("/api/v1/runs?status=paused", headers=admin).json()["runs"]
        assert [(r["id"], r["waiting_for_worker"]) for r in listed] == [(run_id, True)]
        again = client.post(f"/api/v1/runs/{run_id}/resume", headers=admin)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "resume_refused_not_paused"
        queued = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1))
        not_running = client.post(f"/api/v1/runs/{queued.run.id}/pause", headers=admin)
        assert not_running.status_code == 409, not_running.text
        assert not_running.json()["error"]["code"] == "run_not_running"


def test_a_run_paused_past_its_run_timeout_but_within_its_sla_is_never_stale(
    database_url: str, log_dir: Path
) -> None:
    clock = FakeClock()
    settings = make_settings(database_url, pause_sla_s=SLA_S, run_timeout_s=1.0, grace_period_ms=0)
    kernel = build_kernel(settings, skills=build_registry(log_dir), clock=clock)
    kernel.migrate()
    try:
        tenant = make_tenant(kernel)
        kept = _paused_by_policy(kernel, tenant, TimeoutBehaviour.CONTINUE)
        abandoned = _paused_by_policy(kernel, tenant, TimeoutBehaviour.TERMINATE)
        clock.now += int(SLA_S * 1000) // 2  # far past the 1 s run timeout, within the SLA
        assert kernel.reconciler.sweep() == []
        assert kernel.audit.reconciliation(kept) is None

        kernel.pauses.try_resume(tenant.principal, kept)
        with kernel.uow() as uow:
            (claimed,) = uow.runs.claim("worker-B", 10, clock.now, LEASE_MS)
            uow.commit()
        outcome = kernel.executor.execute(claimed, Execution(Claim.of(claimed, "worker-B")))
        assert outcome == "succeeded"
        result = kernel.reconciler.reconcile_now(kept)
        assert result is not None and result.status.value == "COMPLETE"

        # Abandoned past its SLA (no timeout check ran): its deadline moves no further.
        clock.now += int(SLA_S * 1000)
        swept = {r.run_id: r.status.value for r in kernel.reconciler.sweep()}
        assert swept.get(abandoned) == "STALE"
        assert kept not in swept or swept[kept] == "COMPLETE"
    finally:
        kernel.close()


def test_a_terminated_pause_settles_the_runs_cost_and_releases_what_its_agent_held(
    clocked: tuple[Kernel, FakeClock], database_url: str
) -> None:
    """A run ended by its pause's timeout pays like a finished one: its cost so far is
    spent and the agent no longer holds it (DESIGN invariant 7)."""
    kernel, clock = clocked
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(2)).run
    with kernel.uow() as uow:
        (claimed,) = uow.runs.claim("worker-A", 10, kernel.clock.now_ms(), LEASE_MS)
        uow.commit()
    claim = Claim.of(claimed, "worker-A")
    step = StepRecord(
        run_id=run.id,
        step_index=0,
        step_id="s0",
        skill=LOG_SKILL,
        status="succeeded",
        input={},
        output={},
        usage=Usage(),
        cost_micros=700,
        duration_ms=1,
        error=None,
        attempt=claim.attempt,
        tries=1,
        finished_at_ms=clock.now,
    )
    with kernel.uow() as uow:
        assert uow.runs.reserve(claim, 1000)
        uow.commit()
    with kernel.uow() as uow:
        uow.runs.record_step(claim, step, now_ms=clock.now, reserved_micros=1000)
        uow.commit()
    kernel.pauses.pause_at_boundary(
        claimed,
        claim,
        PauseReason.POLICY_CHANGE,
        message="rule changed",
        violations=("LIMIT_CHANGED",),
        on_timeout=TimeoutBehaviour.TERMINATE,
    )
    clock.now += int(SLA_S * 1000) + 1
    assert kernel.pauses.check_timeouts() == 1
    (agent,) = rows(
        kernel,
        "SELECT spent_micros, reserved_micros FROM agents WHERE id = :id",
        id=tenant.agent.id,
    )
    assert (agent.spent_micros, agent.reserved_micros) == (700, 0)
    assert run_row(kernel, run.id).reserved_micros == 0
