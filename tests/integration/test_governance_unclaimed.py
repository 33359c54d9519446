"""Runs that end without a worker — denied at T0, cancelled while queued — still get
their whole governance record and reconcile clean (no spurious audit incident later)."""

from __future__ import annotations

from conftest import ECHO_PLAN, TenantContext, make_tenant
from runkernel.bootstrap import Kernel
from runkernel.domain.audit import STANDARD_EXPECTATIONS

FIVE = sorted(STANDARD_EXPECTATIONS)


def _acked(kernel: Kernel, run_id: str) -> list[tuple[str, str]]:
    return sorted(a.key() for a in kernel.audit.acks(run_id) if a.is_success())


def test_a_run_cancelled_while_queued_is_governed(kernel: Kernel, tenant: TenantContext) -> None:
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN).run
    cancelled = kernel.runs.cancel(tenant.principal, run.id)  # no worker: still queued
    assert (cancelled.phase.value, cancelled.status.value) == ("FAILED", "cancelled")
    assert _acked(kernel, run.id) == FIVE
    result = kernel.reconciler.reconcile_now(run.id)
    assert result is not None and result.is_clean(), result
    with kernel.uow(read_only=True) as uow:
        assert uow.policies.evaluation(run.id) is not None
        trace = uow.traces.get(run.id)
        assert trace is not None and trace["status"] == "aborted"
        assert uow.incidents.for_run(run.id) == []  # a cancel is the tenant's choice


def test_a_run_denied_at_t0_is_governed(kernel: Kernel) -> None:
    broke = make_tenant(kernel, budget_usd=0.0)
    run = kernel.runs.submit(broke.principal, agent_id=broke.agent.id, plan=ECHO_PLAN).run
    assert (run.phase.value, run.status.value) == ("FAILED", "failed_policy")
    assert _acked(kernel, run.id) == FIVE
    result = kernel.reconciler.reconcile_now(run.id)
    assert result is not None and result.is_clean(), result
    with kernel.uow(read_only=True) as uow:
        categories = [i.category.value for i in uow.incidents.for_run(run.id)]
        assert categories == ["AUTHORIZATION_DENIED"]
        assert uow.policies.evaluation(run.id) is not None
