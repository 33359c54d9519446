"""A run's escrow, on both databases: the first step that needs budget takes a slice for
every step left, the next steps draw on it without touching the agent's row, a run whose
slice does not fit (with room for 8 more left over) still runs step by step as long as each
step fits, and a pause gives the
escrow back (only the run's recorded cost stays held until it is final)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.pauses import PauseReason
from runkernel.domain.records import Claim
from runkernel.domain.runs import RunStatus
from runkernel.entrypoints.governance_services import GovernanceServices
from runkernel.services.executor import Execution
from support.skills import LOG_SKILL, build_registry, read_calls
from support.workers import rows

LEASE_MS = 30_000
joint: list[bool] = []  # per reservation: made in the check's transaction
STEP_MICROS = 10  # each step declares it may cost this much; test.log costs 1


@pytest.fixture
def kernel(database_url: str, tmp_path: Path) -> Iterator[Kernel]:
    kernel = build_kernel(make_settings(database_url), skills=build_registry(tmp_path / "calls"))
    kernel.migrate()
    try:
        yield kernel
    finally:
        kernel.close()


def _plan(steps: int) -> dict[str, Any]:
    return {
        "steps": [
            {
                "step_id": f"s{i}",
                "skill": LOG_SKILL,
                "params": {"n": i},
                "estimated_cost_usd": STEP_MICROS / 1_000_000,
            }
            for i in range(steps)
        ]
    }


def _execute(kernel: Kernel, tenant: TenantContext, plan: dict[str, Any]) -> tuple[str, list[int]]:
    """Run ``plan`` to its end on one claim; returns the run id and what each reservation
    asked of the shared rows."""
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    with kernel.uow() as uow:
        (claimed,) = uow.runs.claim("w", 1, kernel.clock.now_ms(), LEASE_MS)
        uow.commit()
    asked: list[int] = []
    reserve = kernel.executor._reserve
    joint.clear()

    def spy(claim: Claim, micros: int, **kw: Any) -> bool:
        asked.append(micros)
        joint.append(kw.get("uow") is not None)
        return reserve(claim, micros, **kw)

    kernel.executor._reserve = spy  # type: ignore[method-assign]
    kernel.executor.execute(claimed, Execution(Claim.of(claimed, "w")))
    return run_id, asked


def _agent(kernel: Kernel, tenant: TenantContext) -> Any:
    return rows(kernel, "SELECT * FROM agents WHERE id = :id", id=tenant.agent.id)[0]


def test_one_reservation_covers_every_step_when_the_slice_fits(kernel: Kernel) -> None:
    tenant = make_tenant(kernel, budget_usd=0.0003)  # room for the slice of 30, 8 times over
    run_id, asked = _execute(kernel, tenant, _plan(3))
    run = kernel.runs.get(tenant.principal, run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    assert asked == [3 * STEP_MICROS]  # one slice; steps 2 and 3 drew on the run's row
    assert joint == [True]  # in the transaction that re-read the rules before step 1
    agent = _agent(kernel, tenant)
    assert (agent.spent_micros, agent.reserved_micros, run.cost_micros) == (3, 0, 3)


def test_a_slice_that_does_not_fit_falls_back_to_what_each_step_needs(kernel: Kernel) -> None:
    tenant = make_tenant(kernel, budget_usd=0.000025)  # 25 micros: a slice of 30 is refused
    run_id, asked = _execute(kernel, tenant, _plan(3))
    run = kernel.runs.get(tenant.principal, run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    # A slice is taken only while the budget has room for 8 more: step 1 asks for 30,
    # then for its own 10; step 2 holds 9, asks for a slice of 20 (11 more: no room),
    # then for the 1 it lacks; step 3 (a slice would be just its need) for its 1.
    assert asked == [30, 10, 11, 1, 1]
    assert joint == [True, False, False, False, False]  # the refused slice rolled back
    agent = _agent(kernel, tenant)
    assert (agent.spent_micros, agent.reserved_micros) == (3, 0)


def test_a_pause_gives_the_escrow_back(kernel: Kernel, tmp_path: Path) -> None:
    tenant = make_tenant(kernel, budget_usd=0.0003)
    GovernanceServices.of(kernel).policies.create(
        tenant.principal,
        kind="require_approval",
        params={"skills": [LOG_SKILL], "params": {"n": 1}},
    )
    run_id, asked = _execute(kernel, tenant, _plan(3))
    run = kernel.runs.get(tenant.principal, run_id)
    assert run is not None and run.status is RunStatus.PAUSED
    (pause,) = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
    assert (pause.reason, pause.step_index) == (PauseReason.APPROVAL_REQUIRED, 1)
    assert asked == [3 * STEP_MICROS] and len(read_calls(tmp_path / "calls")) == 1
    held = rows(kernel, "SELECT reserved_micros FROM runs WHERE id = :id", id=run_id)[0]
    agent = _agent(kernel, tenant)
    # The 29 micros of escrow left are back; the 1 micro step 1 cost stays held until the
    # run is final.
    assert (held.reserved_micros, agent.spent_micros, agent.reserved_micros) == (0, 0, 1)
