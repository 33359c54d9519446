"""When the mid-run check reads the database again: before the first step, then every
``policy_check_min_steps`` checks or ``policy_check_interval_s`` seconds, whichever comes
first; between reads a rule change is not seen, while a cancel handed back by the last
step record is, at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.midrun import CheckDecision, ViolationType
from runkernel.domain.records import Requests, Run
from runkernel.domain.skills import Usage
from runkernel.entrypoints.governance_services import GovernanceServices
from runkernel.services.midrun import NextStep, RunWatch
from support.skills import LOG_SKILL, build_registry, log_plan

INTERVAL_S, MIN_STEPS = 30.0, 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clocked(database_url: str, tmp_path: Path) -> Iterator[tuple[Kernel, FakeClock]]:
    clock = FakeClock()
    settings = make_settings(
        database_url, policy_check_interval_s=INTERVAL_S, policy_check_min_steps=MIN_STEPS
    )
    k = build_kernel(settings, skills=build_registry(tmp_path / "calls"), clock=clock)
    k.migrate()
    yield k, clock
    k.close()


def _check(kernel: Kernel, run: Run, watch: RunWatch, index: int, **kw: Any) -> Any:
    return kernel.checker.check_before_step(
        run, NextStep(index, LOG_SKILL, {}), Usage(), cost_micros=0, watch=watch, **kw
    )


def test_rereads_happen_every_min_steps_or_interval_whichever_first(
    clocked: tuple[Kernel, FakeClock],
) -> None:
    kernel, clock = clocked
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)).run
    watch = RunWatch()
    reads = []
    for index in range(2 * MIN_STEPS + 1):
        assert _check(kernel, run, watch, index).decision is CheckDecision.CONTINUE
        reads.append(watch.reads)
    # Read before the first check, then after every MIN_STEPS checks.
    assert reads == [1] * MIN_STEPS + [2] * MIN_STEPS + [3]
    clock.now += int(INTERVAL_S * 1000) - 1
    _check(kernel, run, watch, 0)
    assert watch.reads == 3  # neither due yet
    clock.now += 1
    _check(kernel, run, watch, 0)
    assert watch.reads == 4  # the interval passed first


def test_a_change_is_seen_at_the_next_reread_and_a_cancel_at_once(
    clocked: tuple[Kernel, FakeClock],
) -> None:
    kernel, clock = clocked
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)).run
    watch = RunWatch()
    assert _check(kernel, run, watch, 0).decision is CheckDecision.CONTINUE
    clock.now += 1
    GovernanceServices.of(kernel).policies.create(
        tenant.principal, kind="max_steps", params={"max_steps": 3}, enforcement="WARN"
    )
    decisions = [_check(kernel, run, watch, i).decision for i in range(1, MIN_STEPS + 1)]
    assert decisions == [CheckDecision.CONTINUE] * (MIN_STEPS - 1) + [CheckDecision.PAUSE]

    fresh = RunWatch()
    stop = _check(kernel, run, fresh, 0, requests=Requests(cancel=True))
    assert stop.decision is CheckDecision.TERMINATE
    assert stop.deciding is ViolationType.MANUAL_STOP


def test_disabled_checks_skip_without_reading(clocked: tuple[Kernel, FakeClock]) -> None:
    kernel, _ = clocked
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)).run
    kernel.checker.enabled = False
    watch = RunWatch()
    assert _check(kernel, run, watch, 0).decision is CheckDecision.SKIP
    assert watch.reads == 0
    # A cancel handed back by the last step still stops the run with the checks off.
    stop = _check(kernel, run, watch, 1, requests=Requests(cancel=True))
    assert (stop.decision, stop.deciding) == (CheckDecision.TERMINATE, ViolationType.MANUAL_STOP)
