"""A pause is stored with everything its resume and its timeout need, the pause itself is
a fenced worker write that ends the lease, and a granted resume is claimed again without
a new attempt — read back by a new kernel on the same database (restart durability)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.pauses import (
    PauseReason,
    ResumeRefusal,
    TimeoutBehaviour,
    decide_resume,
    open_pause,
)
from runkernel.domain.permissions import resumer
from runkernel.domain.records import Claim, Principal, Role
from runkernel.domain.runs import PAUSE, Phase, RunStatus, transition
from runkernel.errors import LeaseLostError
from support.skills import build_registry, log_plan

LEASE_MS = 1_000
SLA_MS = 60_000


@pytest.fixture
def pause_kernel(database_url: str, tmp_path: Path) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url), skills=build_registry(tmp_path / "calls"))
    k.migrate()
    yield k
    k.close()


def test_a_paused_run_is_stored_released_and_claimed_again_without_an_attempt(
    pause_kernel: Kernel, database_url: str
) -> None:
    kernel = pause_kernel
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(2)).run
    t0 = kernel.clock.now_ms()
    with kernel.uow() as uow:
        (claimed,) = uow.runs.claim("worker-A", 10, t0, LEASE_MS)
        uow.commit()
    claim = Claim.of(claimed, "worker-A")
    pause = open_pause(
        run.id,
        1,
        PauseReason.POLICY_CHANGE,
        message="rule r1 changed to v2",
        violations=("LIMIT_CHANGED",),
        paused_by="system",
        now_ms=t0 + 1,
        sla_ms=SLA_MS,
        key_owner=run.submitted_key_id,
        on_timeout=TimeoutBehaviour.ESCALATE,
    )
    paused = transition(*PAUSE[0], *PAUSE[1], at_ms=t0 + 1, reason="paused: POLICY_CHANGE")
    with kernel.uow() as uow:
        uow.pauses.add(pause, run.tenant_id)
        uow.pauses.pause(claim, paused)
        uow.commit()
    with kernel.uow() as uow, pytest.raises(LeaseLostError):
        uow.pauses.pause(claim, paused)  # a run paused once is held by no claim
    with kernel.uow() as uow:  # no takeover: a paused run holds no lease to expire
        assert uow.runs.claim("worker-X", 10, t0 + 10 * LEASE_MS, LEASE_MS) == []
        user = resumer(Principal(run.tenant_id, "k-user", Role.USER), pause.key_owner)
        refused = decide_resume(pause, user, t0 + 2)
        assert refused.refusal is ResumeRefusal.NOT_ALLOWED and refused.pause is not None
        uow.pauses.save(refused.pause)
        uow.commit()

    restarted = build_kernel(make_settings(database_url))  # a new process, the same database
    try:
        with restarted.uow(read_only=True) as uow:
            stored = uow.pauses.open_for(run.id)
            row = uow.runs.get(run.tenant_id, run.id)
            assert uow.pauses.expired(t0 + 1 + SLA_MS) == [stored]
            assert uow.pauses.expired(t0 + SLA_MS) == []
        assert stored == refused.pause
        assert stored.violations == ("LIMIT_CHANGED",)
        assert stored.on_timeout is TimeoutBehaviour.ESCALATE
        assert (stored.resume_attempts, stored.refusals[0].actor) == (1, "user:k-user")
        assert row is not None
        assert (row.phase, row.status, row.lease_owner) == (Phase.EXECUTING, RunStatus.PAUSED, None)
        with restarted.uow() as uow:
            assert uow.pauses.request_resume(run.id, t0 + 3)
            uow.commit()
        with restarted.uow(read_only=True) as uow:
            waiting = uow.runs.get(run.tenant_id, run.id)
        assert waiting is not None and waiting.resume_requested_at_ms == t0 + 3
        with restarted.uow() as uow:
            (again,) = uow.runs.claim("worker-B", 10, t0 + 4, LEASE_MS)
            uow.commit()
        assert (again.attempt, again.claim_epoch, again.lease_owner) == (1, 2, "worker-B")
        assert again.resume_requested_at_ms is None
        with restarted.uow(read_only=True) as uow:
            detail = uow.runs.get(run.tenant_id, run.id)
        assert detail is not None
        reasons = [t.reason for t in detail.transitions]
        assert reasons[-2:] == ["paused: POLICY_CHANGE", "resumed; claimed by worker-B (attempt 1)"]
    finally:
        restarted.close()


def test_only_a_running_run_can_be_asked_to_pause_and_only_a_paused_one_resumed(
    pause_kernel: Kernel,
) -> None:
    kernel = pause_kernel
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)).run
    now = kernel.clock.now_ms()
    with kernel.uow() as uow:
        assert not uow.pauses.request_pause(run.tenant_id, run.id, now, by="x")  # queued
        assert not uow.pauses.request_resume(run.id, now)
        uow.runs.claim("worker-A", 10, now, LEASE_MS)
        assert not uow.pauses.request_pause("another-tenant", run.id, now, by="x")
        assert uow.pauses.request_pause(run.tenant_id, run.id, now, by="admin:k")
        uow.commit()
    with kernel.uow(read_only=True) as uow:
        stored = uow.runs.get(run.tenant_id, run.id)
    assert stored is not None and stored.pause_requested
    with kernel.uow(read_only=True) as uow:
        assert uow.pauses.requested_by(run.id) == "admin:k"
