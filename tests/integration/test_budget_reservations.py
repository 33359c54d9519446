"""What a step reserves, and that a step which does not fit is refused before its skill is
called: a declared ``estimated_cost_usd``, the configured default, a run's own max_cost,
and a step's retries (every try may be paid for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import make_settings, make_tenant
from runkernel.bootstrap import build_kernel
from runkernel.domain.records import Claim, Run, RunBudget
from runkernel.domain.runs import RunStatus
from runkernel.services.executor import Execution
from support.skills import LOG_SKILL, build_registry, read_calls
from support.workers import rows

LEASE_MS = 30_000


def _run(database_url: str, tmp_path: Path, plan: dict[str, Any], **kw: Any) -> tuple[Any, Any]:
    """Submit ``plan`` for an agent with a budget of 100 micros, run it to its end; return
    (the final run, its agent's row)."""
    settings = make_settings(database_url, **kw.pop("settings", {}))
    kernel = build_kernel(settings, skills=build_registry(tmp_path / "calls"))
    kernel.migrate()
    try:
        tenant = make_tenant(kernel, budget_usd=0.0001)
        submitted = kernel.runs.submit(
            tenant.principal, agent_id=tenant.agent.id, plan=plan, **kw
        ).run
        with kernel.uow() as uow:
            (claimed,) = uow.runs.claim("w", 1, kernel.clock.now_ms(), LEASE_MS)
            uow.commit()
        kernel.executor.execute(claimed, Execution(_claim_of(claimed)))
        run = kernel.runs.get(tenant.principal, submitted.id)
        agent = rows(kernel, "SELECT * FROM agents WHERE id = :id", id=tenant.agent.id)[0]
        return run, agent
    finally:
        kernel.close()


def _claim_of(run: Run) -> Claim:
    return Claim.of(run, run.lease_owner or "")


def _step(**extra: Any) -> dict[str, Any]:
    return {"steps": [{"step_id": "s", "skill": LOG_SKILL, "params": {"n": 1}, **extra}]}


def _refused_before_the_call(run: Any, agent: Any, tmp_path: Path) -> None:
    assert (run.status, run.error_code, run.steps) == (
        RunStatus.FAILED_POLICY,
        "budget_exceeded",
        (),
    )
    assert read_calls(tmp_path / "calls") == []
    assert (agent.spent_micros, agent.reserved_micros) == (0, 0)


def test_a_declared_estimate_over_the_agent_budget_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    run, agent = _run(database_url, tmp_path, _step(estimated_cost_usd=0.000101))
    _refused_before_the_call(run, agent, tmp_path)


def test_a_declared_estimate_that_fits_runs_and_settles_to_the_actual_cost(
    database_url: str, tmp_path: Path
) -> None:
    run, agent = _run(database_url, tmp_path, _step(estimated_cost_usd=0.0001))
    assert run.status is RunStatus.SUCCEEDED and len(read_calls(tmp_path / "calls")) == 1
    # test.log costs 1 micro: the other 99 reserved are released.
    assert (agent.spent_micros, agent.reserved_micros) == (1, 0)


def test_the_configured_default_applies_to_steps_without_an_estimate(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"default_step_cost_usd": "0.0002"}
    run, agent = _run(database_url, tmp_path, _step(), settings=settings)
    _refused_before_the_call(run, agent, tmp_path)


def test_retries_multiply_the_reservation(database_url: str, tmp_path: Path) -> None:
    # 3 tries of 40 micros may cost 120 > 100.
    run, agent = _run(database_url, tmp_path, _step(estimated_cost_usd=0.00004, retries=2))
    _refused_before_the_call(run, agent, tmp_path)


def test_the_runs_own_max_cost_is_checked_against_the_worst_case(
    database_url: str, tmp_path: Path
) -> None:
    plan = _step(estimated_cost_usd=0.00005)
    run, agent = _run(database_url, tmp_path, plan, budget=RunBudget(max_cost_micros=40))
    _refused_before_the_call(run, agent, tmp_path)
