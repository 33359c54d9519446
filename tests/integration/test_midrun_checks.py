"""The check before every step, on both databases, driven step by step with a fake clock:
a rule changed or disabled while runs execute pauses them at their next check; a
require_approval rule pauses before its step, an admin approves (the step runs once, no
new attempt) or rejects (failed_policy); a suspended tenant's run terminates while another
tenant's finishes; a cancel stops a running run before its next step with a clean audit;
a checker that fails pauses the run; disabled checks skip."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, make_settings, make_tenant
from runkernel.adapters.skills import SkillRegistry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.midrun import CheckDecision, ViolationType
from runkernel.domain.pauses import PauseReason
from runkernel.domain.records import Claim, Principal, Role, RunBudget, TenantStatus
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import SkillContext
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.governance_services import GovernanceServices
from runkernel.entrypoints.worker import WorkerPool
from runkernel.services.executor import Execution
from support.governance_api import bearer
from support.skills import LOG_SKILL, build_registry, read_calls
from support.workers import rows, run_row, wait_until

HOOK_SKILL = "test.hook"
LEASE_MS = 60_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class Hooks:
    """A skill that runs what the test registered for its step, as if someone acted
    while the step executed."""

    def __init__(self) -> None:
        self.actions: dict[tuple[str, str], Callable[[], None]] = {}

    def on(self, run_id: str, step_id: str, action: Callable[[], None]) -> None:
        self.actions[(run_id, step_id)] = action

    def __call__(self, params: dict[str, Any], context: SkillContext) -> dict[str, str]:
        action = self.actions.pop((context.run_id, context.step_id), None)
        if action is not None:
            action()
        return {"hook": context.step_id}


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


def _registry(log_dir: Path, hooks: Hooks) -> SkillRegistry:
    registry = build_registry(log_dir)
    registry.register(HOOK_SKILL, hooks)
    return registry


def _kernel(database_url: str, log_dir: Path, hooks: Hooks, clock: FakeClock, **kw: Any) -> Kernel:
    registry = _registry(log_dir, hooks)
    settings = make_settings(database_url, policy_check_min_steps=1, pause_sla_s=3600, **kw)
    k = build_kernel(settings, skills=registry, clock=clock)
    k.migrate()
    return k


@pytest.fixture
def world(database_url: str, log_dir: Path, hooks: Hooks) -> Iterator[tuple[Kernel, FakeClock]]:
    clock = FakeClock()
    k = _kernel(database_url, log_dir, hooks, clock)
    yield k, clock
    k.close()


def _plan(*skills: str) -> dict[str, Any]:
    return {
        "steps": [
            {"step_id": f"s{i}", "skill": skill, "params": {"n": i}}
            for i, skill in enumerate(skills)
        ]
    }


def _submit(kernel: Kernel, tenant: TenantContext, plan: dict[str, Any], **kw: Any) -> str:
    return kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan, **kw).run.id


def _claim(kernel: Kernel, worker: str) -> dict[str, Any]:
    with kernel.uow() as uow:
        claimed = uow.runs.claim(worker, 10, kernel.clock.now_ms(), LEASE_MS)
        uow.commit()
    return {r.id: r for r in claimed}


def _execute(kernel: Kernel, claimed: Any, worker: str) -> str:
    return kernel.executor.execute(claimed, Execution(Claim.of(claimed, worker)))


def _run_all(kernel: Kernel, worker: str = "worker-A") -> dict[str, str]:
    return {rid: _execute(kernel, r, worker) for rid, r in _claim(kernel, worker).items()}


def _checks(kernel: Kernel, run_id: str) -> list[Any]:
    with kernel.uow(read_only=True) as uow:
        return uow.policy_checks.for_run(run_id)


def _policies(kernel: Kernel) -> Any:
    return GovernanceServices.of(kernel).policies


def _user(kernel: Kernel, tenant: TenantContext) -> tuple[str, Principal]:
    key = kernel.tenancy.create_key(tenant.principal, Role.USER).api_key
    return key, kernel.tenancy.authenticate(key)


def test_a_rule_changed_while_runs_execute_pauses_them_and_an_admin_resume_continues(
    world: tuple[Kernel, FakeClock], hooks: Hooks, log_dir: Path
) -> None:
    kernel, clock = world
    tenant = make_tenant(kernel)
    rule = _policies(kernel).create(
        tenant.principal, kind="max_steps", params={"max_steps": 10}, enforcement="BLOCK"
    )
    clock.now += 1_000
    first = _submit(kernel, tenant, _plan(HOOK_SKILL, LOG_SKILL, LOG_SKILL))
    second = _submit(kernel, tenant, _plan(LOG_SKILL, LOG_SKILL, LOG_SKILL))
    within = _submit(kernel, tenant, _plan(LOG_SKILL, LOG_SKILL))
    claimed = _claim(kernel, "worker-A")

    def change() -> None:
        clock.now += 1_000
        _policies(kernel).change(tenant.principal, rule.id, {"params": {"max_steps": 2}})

    hooks.on(first, "s0", change)
    assert _execute(kernel, claimed[first], "worker-A") == "paused"  # before s1
    # Not started yet: the change counts only for a plan that now breaks the rule.
    assert _execute(kernel, claimed[second], "worker-A") == "paused"  # before its s0
    assert _execute(kernel, claimed[within], "worker-A") == "succeeded"
    assert _checks(kernel, within) == []
    for run_id, step in ((first, 1), (second, 0)):
        row = run_row(kernel, run_id)
        assert (row.status, row.next_step, row.lease_owner) == ("paused", step, None)
        (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
        assert (pause.reason, pause.violations, pause.step_index) == (
            PauseReason.POLICY_CHANGE,
            ("LIMIT_CHANGED",),
            step,
        )
        (check,) = _checks(kernel, run_id)
        assert (check.decision, check.step_index) == (CheckDecision.PAUSE, step)
        assert [f.type for f in check.violations] == [ViolationType.LIMIT_CHANGED]
        assert rule.id in check.reason
    assert [c.step_id for c in read_calls(log_dir) if c.run_id == second] == []

    # A user may not resume a policy-change pause; an admin accepts the rules as they are.
    _, user = _user(kernel, tenant)
    with pytest.raises(Exception, match="POLICY_CHANGE"):
        kernel.pauses.try_resume(user, first)
    kernel.pauses.try_resume(tenant.principal, first, note="the new limit is fine")
    assert _run_all(kernel, "worker-B") == {first: "succeeded"}
    row = run_row(kernel, first)
    assert (row.attempt, row.claim_epoch) == (1, 2)  # resumed: no new attempt
    assert [c.step_id for c in read_calls(log_dir) if c.run_id == first] == ["s1", "s2"]

    with TestClient(create_app(kernel)) as client:
        detail = client.get(f"/api/v1/runs/{first}", headers=bearer(tenant.api_key)).json()
    (shown,) = detail["policy_checks"]
    assert (shown["decision"], shown["step_index"]) == ("PAUSE", 1)
    assert shown["violations"][0]["type"] == "LIMIT_CHANGED"


def test_disabling_a_rule_pauses_the_run_at_its_next_check(
    world: tuple[Kernel, FakeClock], hooks: Hooks
) -> None:
    kernel, clock = world
    tenant = make_tenant(kernel)
    rule = _policies(kernel).create(
        tenant.principal, kind="denied_skills", params={"skills": ["nope"]}
    )
    clock.now += 1_000
    run_id = _submit(kernel, tenant, _plan(HOOK_SKILL, LOG_SKILL))

    def disable() -> None:
        clock.now += 1_000
        _policies(kernel).change(tenant.principal, rule.id, {"enforcement": "DISABLED"})

    hooks.on(run_id, "s0", disable)
    assert _run_all(kernel) == {run_id: "paused"}
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.reason, pause.violations) == (PauseReason.POLICY_CHANGE, ("POLICY_DISABLED",))


def test_an_approval_pauses_before_its_step_a_user_is_refused_and_an_admin_approves_once(
    world: tuple[Kernel, FakeClock], log_dir: Path
) -> None:
    kernel, clock = world
    tenant = make_tenant(kernel)
    _policies(kernel).create(
        tenant.principal,
        kind="require_approval",
        params={"skills": [LOG_SKILL], "params": {"n": 1}},
    )
    clock.now += 1_000
    run_id = _submit(kernel, tenant, _plan(LOG_SKILL, LOG_SKILL, LOG_SKILL))
    assert _run_all(kernel) == {run_id: "paused"}
    assert [c.step_id for c in read_calls(log_dir) if c.run_id == run_id] == ["s0"]
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.reason, pause.step_index) == (PauseReason.APPROVAL_REQUIRED, 1)

    user_key, user = _user(kernel, tenant)
    with TestClient(create_app(kernel)) as client:
        refused = client.post(
            f"/api/v1/runs/{run_id}/resume", json={"note": "me"}, headers=bearer(user_key)
        )
        assert refused.status_code == 403, refused.text
        (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
        assert [(r.actor, r.reason.value) for r in pause.refusals] == [
            (f"user:{user.key_id}", "not_allowed")
        ]
        approved = client.post(
            f"/api/v1/runs/{run_id}/resume",
            json={"note": "approved"},
            headers=bearer(tenant.api_key),
        )
        assert approved.status_code == 200, approved.text
    assert _run_all(kernel, "worker-B") == {run_id: "succeeded"}
    row = run_row(kernel, run_id)
    assert (row.attempt, row.claim_epoch) == (1, 2)
    calls = [c.step_id for c in read_calls(log_dir) if c.run_id == run_id]
    assert calls == ["s0", "s1", "s2"]  # the approved step ran once, no step twice
    (check,) = _checks(kernel, run_id)
    assert [f.type for f in check.violations] == [ViolationType.APPROVAL_REQUIRED]


def test_a_rejected_approval_ends_the_run_failed_policy_with_actor_and_note(
    world: tuple[Kernel, FakeClock], log_dir: Path
) -> None:
    kernel, clock = world
    tenant = make_tenant(kernel)
    _policies(kernel).create(
        tenant.principal, kind="require_approval", params={"skills": [LOG_SKILL]}
    )
    clock.now += 1_000
    run_id = _submit(kernel, tenant, _plan(HOOK_SKILL, LOG_SKILL))
    assert _run_all(kernel) == {run_id: "paused"}
    user_key, _ = _user(kernel, tenant)
    with TestClient(create_app(kernel)) as client:
        refused = client.post(
            f"/api/v1/runs/{run_id}/reject", json={"note": "x"}, headers=bearer(user_key)
        )
        assert refused.status_code == 403, refused.text
        rejected = client.post(
            f"/api/v1/runs/{run_id}/reject",
            json={"note": "too risky"},
            headers=bearer(tenant.api_key),
        )
        assert rejected.status_code == 200, rejected.text
        body = rejected.json()
        again = client.post(f"/api/v1/runs/{run_id}/reject", headers=bearer(tenant.api_key))
        assert again.status_code == 409, again.text
    assert (body["status"], body["error"]["code"]) == ("failed_policy", "approval_rejected")
    reason = body["transitions"][-1]["reason"]
    assert f"admin:{tenant.principal.key_id}" in reason and "too risky" in reason
    assert [c.step_id for c in read_calls(log_dir) if c.run_id == run_id] == []
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.outcome, pause.is_open) == ("rejected", False)
    assert rows(kernel, "SELECT 1 FROM incidents WHERE run_id = :id", id=run_id)
    assert rows(kernel, "SELECT 1 FROM policy_evaluations WHERE run_id = :id", id=run_id)
    assert rows(kernel, "SELECT 1 FROM traces WHERE run_id = :id", id=run_id)
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None and result.status.value == "COMPLETE", result

    running = _submit(kernel, tenant, _plan(LOG_SKILL))
    with TestClient(create_app(kernel)) as client:
        not_paused = client.post(f"/api/v1/runs/{running}/reject", headers=bearer(tenant.api_key))
    assert not_paused.status_code == 409, not_paused.text


def test_a_suspended_tenants_running_run_terminates_and_another_tenants_finishes(
    world: tuple[Kernel, FakeClock], hooks: Hooks
) -> None:
    kernel, _ = world
    tenant, other = make_tenant(kernel), make_tenant(kernel, name="other")
    run_id = _submit(kernel, tenant, _plan(HOOK_SKILL, LOG_SKILL))
    untouched = _submit(kernel, other, _plan(HOOK_SKILL, LOG_SKILL))
    claimed = _claim(kernel, "worker-A")
    operator = Principal.operator(kernel.operators.create_key().key.id)
    hooks.on(
        run_id,
        "s0",
        lambda: kernel.tenancy.set_status(
            operator, tenant.principal.tenant_id, TenantStatus.SUSPENDED
        ),
    )
    assert _execute(kernel, claimed[run_id], "worker-A") == RunStatus.FAILED_POLICY.value
    assert _execute(kernel, claimed[untouched], "worker-A") == RunStatus.SUCCEEDED.value
    row = run_row(kernel, run_id)
    assert (row.status, row.error_code, row.next_step) == ("failed_policy", "tenant_suspended", 1)
    (check,) = _checks(kernel, run_id)
    assert check.decision is CheckDecision.TERMINATE
    assert [f.type for f in check.violations] == [ViolationType.TENANT_SUSPENDED]
    assert rows(kernel, "SELECT 1 FROM incidents WHERE run_id = :id", id=run_id)
    assert _checks(kernel, untouched) == []


def test_cancel_of_a_running_run_stops_it_before_its_next_step_with_a_clean_audit(
    world: tuple[Kernel, FakeClock], hooks: Hooks, log_dir: Path
) -> None:
    kernel, _ = world
    tenant = make_tenant(kernel)
    run_id = _submit(kernel, tenant, _plan(HOOK_SKILL, LOG_SKILL, LOG_SKILL))
    hooks.on(run_id, "s0", lambda: kernel.runs.cancel(tenant.principal, run_id))
    assert _run_all(kernel) == {run_id: "cancelled"}
    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.status, run.error_code, len(run.steps)) == (RunStatus.CANCELLED, "cancelled", 1)
    assert [c.step_id for c in read_calls(log_dir) if c.run_id == run_id] == []
    (check,) = _checks(kernel, run_id)
    assert [f.type for f in check.violations] == [ViolationType.MANUAL_STOP]
    (trace,) = rows(kernel, "SELECT status FROM traces WHERE run_id = :id", id=run_id)
    assert trace.status != "STARTED"
    assert rows(kernel, "SELECT 1 FROM policy_evaluations WHERE run_id = :id", id=run_id)
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None
    assert (result.status.value, result.missing_actions, result.drift_actions) == (
        "COMPLETE",
        (),
        (),
    ), result


def test_a_checker_that_fails_pauses_the_run_fail_closed(
    world: tuple[Kernel, FakeClock], monkeypatch: pytest.MonkeyPatch, log_dir: Path
) -> None:
    kernel, _ = world
    tenant = make_tenant(kernel)
    run_id = _submit(kernel, tenant, _plan(LOG_SKILL))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("policy store unreadable")

    monkeypatch.setattr(kernel.checker, "reread", broken)
    assert _run_all(kernel) == {run_id: "paused"}
    assert read_calls(log_dir) == []
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert pause.reason is PauseReason.POLICY_CHANGE
    assert "policy store unreadable" in pause.message
    (check,) = _checks(kernel, run_id)
    assert check.decision is CheckDecision.PAUSE


def test_disabled_checks_skip_and_the_run_finishes_under_a_changed_rule(
    database_url: str, log_dir: Path, hooks: Hooks
) -> None:
    clock = FakeClock()
    kernel = _kernel(database_url, log_dir, hooks, clock, mid_run_checks=False)
    try:
        tenant = make_tenant(kernel)
        _policies(kernel).create(
            tenant.principal, kind="require_approval", params={"skills": [LOG_SKILL]}
        )
        clock.now += 1_000
        run_id = _submit(kernel, tenant, _plan(LOG_SKILL, LOG_SKILL))
        assert _run_all(kernel) == {run_id: "succeeded"}
        assert _checks(kernel, run_id) == []
    finally:
        kernel.close()


def test_the_run_timeout_leaves_out_the_time_the_run_spent_paused(
    world: tuple[Kernel, FakeClock], hooks: Hooks
) -> None:
    kernel, clock = world
    tenant = make_tenant(kernel)
    run_id = _submit(kernel, tenant, _plan(HOOK_SKILL, LOG_SKILL), budget=RunBudget(timeout_s=10))
    hooks.on(run_id, "s0", lambda: kernel.pauses.pause_run(tenant.principal, run_id))
    assert _run_all(kernel) == {run_id: "paused"}
    clock.now += 60_000  # paused far longer than the run's 10 s timeout
    kernel.pauses.try_resume(tenant.principal, run_id)
    assert _run_all(kernel, "worker-B") == {run_id: "succeeded"}


def test_on_a_worker_pool_a_suspension_ends_the_tenants_running_runs_only(
    database_url: str, log_dir: Path, hooks: Hooks
) -> None:
    """Real worker threads and clock: runs of two tenants wait inside a step; one tenant is
    suspended meanwhile; at their next check its runs end failed_policy, the other's
    finish."""
    kernel = build_kernel(
        make_settings(database_url, policy_check_min_steps=1),
        skills=_registry(log_dir, hooks),
    )
    kernel.migrate()
    tenant, other = make_tenant(kernel), make_tenant(kernel)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def wait_inside() -> None:
        entered.release()
        assert release.wait(30), "never released"

    plan = _plan(HOOK_SKILL, LOG_SKILL)
    suspended = [_submit(kernel, tenant, plan) for _ in range(2)]
    untouched = _submit(kernel, other, plan)
    for run_id in (*suspended, untouched):
        hooks.on(run_id, "s0", wait_inside)
    pool = WorkerPool(kernel, concurrency=3, worker_id="pool").start()
    try:
        for _ in range(3):
            assert entered.acquire(timeout=20), "a run never reached its first step"
        operator = Principal.operator(kernel.operators.create_key().key.id)
        kernel.tenancy.set_status(operator, tenant.principal.tenant_id, TenantStatus.SUSPENDED)
        release.set()
        for run_id in (*suspended, untouched):
            wait_until(
                lambda r=run_id: run_row(kernel, r).phase in ("COMPLETED", "FAILED"),
                timeout=20,
                what=f"run {run_id} final",
            )
    finally:
        release.set()
        pool.stop(drain_timeout_s=5)
        kernel.close()
    kernel = build_kernel(make_settings(database_url))
    try:
        for run_id in suspended:
            row = run_row(kernel, run_id)
            assert (row.status, row.error_code) == ("failed_policy", "tenant_suspended")
        assert run_row(kernel, untouched).status == "succeeded"
        calls = {c.run_id for c in read_calls(log_dir)}
        assert untouched in calls and not calls & set(suspended)
    finally:
        kernel.close()
