"""A worker whose lease was taken over can write nothing (DESIGN invariant 6): every write
is conditioned on the fencing token, so the old holder's writes raise or are refused and
the new holder's state stays exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Claim, Run, StepRecord
from runkernel.domain.runs import Phase, RunStatus, path
from runkernel.domain.skills import Usage
from runkernel.errors import LeaseLostError
from runkernel.services.executor import Execution
from support.skills import build_registry, log_plan, read_calls
from support.workers import rows, run_row

LEASE_MS = 1_000


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@pytest.fixture
def fenced_kernel(database_url: str, log_dir: Path) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url), skills=build_registry(log_dir))
    k.migrate()
    yield k
    k.close()


def _claim(kernel: Kernel, worker: str, now_ms: int) -> Run:
    with kernel.uow() as uow:
        claimed = uow.runs.claim(worker, 10, now_ms, LEASE_MS)
        uow.commit()
    assert len(claimed) == 1, claimed
    return claimed[0]


def _taken_over(kernel: Kernel) -> tuple[TenantContext, Run, Run]:
    """Worker A claims the run; its lease lapses; worker B claims it."""
    tenant = make_tenant(kernel)
    submitted = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(2)).run
    t0 = kernel.clock.now_ms()
    a = _claim(kernel, "worker-A", t0)
    with kernel.uow() as uow:  # while A holds a live lease nobody else may claim the run
        assert uow.runs.claim("worker-B", 10, t0 + LEASE_MS - 1, LEASE_MS) == []
        uow.commit()
    b = _claim(kernel, "worker-B", t0 + LEASE_MS + 1)
    assert a.id == b.id == submitted.id
    assert (a.claim_epoch, a.attempt, a.lease_owner) == (1, 1, "worker-A")
    assert (b.claim_epoch, b.attempt, b.lease_owner) == (2, 2, "worker-B")
    return tenant, a, b


def _claim_of(run: Run) -> Claim:
    return Claim.of(run, run.lease_owner or "")


def _snapshot(kernel: Kernel, run_id: str) -> dict[str, object]:
    return {
        "run": dict(run_row(kernel, run_id)._mapping),
        "steps": rows(kernel, "SELECT * FROM run_steps WHERE run_id = :id", id=run_id),
        "transitions": rows(
            kernel, "SELECT * FROM run_transitions WHERE run_id = :id ORDER BY id", id=run_id
        ),
        "claims": rows(
            kernel, "SELECT * FROM run_claims WHERE run_id = :id ORDER BY claim_epoch", id=run_id
        ),
        "spent": rows(kernel, "SELECT spent_micros FROM agents"),
    }


def test_old_holder_cannot_write_after_takeover(fenced_kernel: Kernel) -> None:
    kernel = fenced_kernel
    _, a, b = _taken_over(kernel)
    before = _snapshot(kernel, b.id)
    assert before["run"]["lease_owner"] == "worker-B"  # type: ignore[index]
    claims = before["claims"]
    assert [(c.claim_epoch, c.attempt, c.worker_id) for c in claims] == [  # type: ignore[attr-defined]
        (1, 1, "worker-A"),
        (2, 2, "worker-B"),
    ]
    claim_a = _claim_of(a)
    now = kernel.clock.now_ms() + 2 * LEASE_MS
    step = StepRecord(
        run_id=a.id,
        step_index=0,
        step_id="s0",
        skill="test.log",
        status="succeeded",
        input={"n": 0},
        output={"written by": "A"},
        usage=Usage(5, 5),
        cost_micros=123,
        duration_ms=1,
        error=None,
        attempt=a.attempt,
        tries=1,
        finished_at_ms=now,
    )
    with pytest.raises(LeaseLostError), kernel.uow() as uow:
        uow.runs.record_step(claim_a, step, now_ms=now)
        uow.commit()

    chain = path(
        (Phase.EXECUTING, RunStatus.RUNNING),
        (Phase.FAILED, RunStatus.FAILED, "A gives up"),
        at_ms=now,
    )
    with pytest.raises(LeaseLostError), kernel.uow() as uow:
        uow.runs.finish(claim_a, chain, error_code="step_failed", error_message="A")
        uow.commit()

    with kernel.uow() as uow:
        assert uow.runs.renew_lease(claim_a, now, LEASE_MS) is False
        assert uow.runs.release(claim_a, now) is False
        uow.commit()

    # A forged claim with B's token but A's name, or B's name with A's token, is no
    # better — nor is B's name and attempt with A's epoch: the token is the epoch.
    for forged in (
        Claim(a.id, b.claim_epoch, b.attempt, "worker-A", 0),
        Claim(a.id, a.claim_epoch, a.attempt, "worker-B", 0),
        Claim(a.id, a.claim_epoch, b.attempt, "worker-B", 0),
    ):
        with kernel.uow() as uow:
            assert uow.runs.renew_lease(forged, now, LEASE_MS) is False
            uow.commit()

    assert _snapshot(kernel, b.id) == before

    # B, the holder, still can write; what it writes is fenced by its epoch alone (the
    # attempt it carries is what its steps are recorded under).
    claim_b = _claim_of(b)
    with kernel.uow() as uow:
        assert uow.runs.renew_lease(replace(claim_b, attempt=99), now, LEASE_MS) is True
        assert uow.runs.renew_lease(claim_b, now, LEASE_MS) is True
        uow.runs.record_step(claim_b, step, now_ms=now)
        uow.commit()
    row = run_row(kernel, b.id)
    assert (row.next_step, row.cost_micros, row.lease_owner) == (1, 123, "worker-B")


def test_executor_of_old_holder_writes_nothing(fenced_kernel: Kernel, log_dir: Path) -> None:
    kernel = fenced_kernel
    _, a, b = _taken_over(kernel)
    before = _snapshot(kernel, b.id)

    outcome = kernel.executor.execute(a, Execution(_claim_of(a)))

    assert outcome == "lease_lost"
    assert _snapshot(kernel, b.id) == before
    # The skill did run once for A (fencing guards writes, not side effects) and was
    # never followed by a second step.
    assert [(c.step_id, c.attempt) for c in read_calls(log_dir)] == [("s0", 1)]


def test_executor_that_knows_its_lease_is_lost_does_not_even_call_the_skill(
    fenced_kernel: Kernel, log_dir: Path
) -> None:
    kernel = fenced_kernel
    _, a, b = _taken_over(kernel)
    before = _snapshot(kernel, b.id)
    execution = Execution(_claim_of(a))
    execution.lost = True  # what the lease keeper sets when a renewal is refused

    assert kernel.executor.execute(a, execution) == "lease_lost"
    assert _snapshot(kernel, b.id) == before
    assert read_calls(log_dir) == []


def test_new_holder_completes_the_run_after_takeover(fenced_kernel: Kernel) -> None:
    kernel = fenced_kernel
    tenant, a, b = _taken_over(kernel)
    assert kernel.executor.execute(a, Execution(_claim_of(a))) == "lease_lost"

    assert kernel.executor.execute(b, Execution(_claim_of(b))) == "succeeded"

    run = kernel.runs.get(tenant.principal, b.id)
    assert (run.phase, run.status, run.attempt, run.lease_owner) == (
        Phase.COMPLETED,
        RunStatus.SUCCEEDED,
        2,
        None,
    )
    assert [(s.step_id, s.attempt) for s in run.steps] == [("s0", 2), ("s1", 2)]
    reasons = [t.reason for t in run.transitions]
    assert "claimed by worker-A (attempt 1)" in reasons
    assert "lease expired; reclaimed by worker-B (attempt 2)" in reasons
    assert sum(1 for t in run.transitions if t.to_phase is Phase.COMPLETED) == 1


def test_the_fence_is_the_epoch_even_where_it_parts_from_the_attempt(
    fenced_kernel: Kernel,
) -> None:
    """A run claimed more often than it was (re)started — as a resumed run will be — has
    an epoch ahead of its attempt: a takeover then counts attempt 2 under epoch 6, logs
    that claim by its epoch, and only epoch 6 may write."""
    kernel = fenced_kernel
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)).run.id
    t0 = kernel.clock.now_ms()
    first = _claim(kernel, "worker-A", t0)
    with kernel.db.engine.begin() as conn:  # four claims that counted no attempt
        conn.execute(text("UPDATE runs SET claim_epoch = 5 WHERE id = :id"), {"id": run_id})

    taken = _claim(kernel, "worker-B", t0 + LEASE_MS + 1)

    assert (first.claim_epoch, first.attempt) == (1, 1)
    assert (taken.claim_epoch, taken.attempt) == (6, 2)
    claims = rows(
        kernel, "SELECT * FROM run_claims WHERE run_id = :id ORDER BY claim_epoch", id=run_id
    )
    assert [(c.claim_epoch, c.attempt, c.worker_id) for c in claims] == [
        (1, 1, "worker-A"),
        (6, 2, "worker-B"),
    ]
    now = t0 + LEASE_MS + 2
    with kernel.uow() as uow:
        # B's attempt with the epoch it would have had if epochs were attempts: refused.
        assert uow.runs.renew_lease(replace(_claim_of(taken), epoch=2), now, LEASE_MS) is False
        assert uow.runs.renew_lease(_claim_of(taken), now, LEASE_MS) is True
        uow.commit()
    run = kernel.runs.get(tenant.principal, run_id)
    assert run.transitions[-1].reason == "lease expired; reclaimed by worker-B (attempt 2)"
    assert kernel.executor.execute(taken, Execution(_claim_of(taken))) == "succeeded"
    assert [(s.step_id, s.attempt) for s in kernel.runs.get(tenant.principal, run_id).steps] == [
        ("s0", 2)
    ]


def test_a_renewal_that_fails_for_a_run_its_claim_ended_is_no_takeover(
    fenced_kernel: Kernel, caplog: pytest.LogCaptureFixture
) -> None:
    """The lease keeper may renew a run its executor has just completed (the slot is freed
    a moment later): that is not reported as a takeover; a real takeover still is."""
    from runkernel.entrypoints.worker import WorkerPool

    tenant, a, _ = _taken_over(fenced_kernel)
    done = fenced_kernel.runs.submit(
        tenant.principal, agent_id=tenant.agent.id, plan=log_plan(1)
    ).run
    claimed = _claim(fenced_kernel, "worker-A", fenced_kernel.clock.now_ms())
    assert claimed.id == done.id
    finished = Execution(Claim.of(claimed, "worker-A"))
    fenced_kernel.executor.execute(claimed, finished)
    overtaken = Execution(Claim.of(a, "worker-A"))
    pool = WorkerPool(fenced_kernel, concurrency=1)
    pool._inflight.update({done.id: finished, a.id: overtaken})
    with caplog.at_level("WARNING", logger="runkernel.entrypoints.worker"):
        pool._renew([finished, overtaken])
    assert (finished.lost, overtaken.lost) == (False, True)
    assert [r.getMessage() for r in caplog.records] == [f"lease on run {a.id} was taken over"]
