"""The runtime audit contract with real worker processes (issue 3 acceptance; DESIGN
invariants 1, 5, 6).

- a normal run is COMPLETE and clean with all five acks;
- the only worker SIGKILLed mid-step, nothing left to recover the run: once its deadline
  passes a sweep stores it STALE (incident, policy, complete_trace and finalize missing,
  start_trace acked), opens one STALE_RUN incident and writes one
  ``audit.reconciliation.stale`` event — once, however many sweeps follow;
- a worker killed inside the completion transaction, before its commit, with another
  worker alive: the run is reclaimed and completes with exactly one set of records and a
  clean audit;
- 5 runs of which 3 lose their worker: exactly those 3 are STALE;
- a duplicate incident ack is drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import (
    AckStatus,
    ExpectationStatus,
    ReconciliationResult,
    ReconciliationStatus,
    create_domain_ack,
)
from runkernel.domain.records import RunBudget
from support.governance import STANDARD_KEYS, fail_plan, register_fail_skill, snapshot
from support.skills import blocking_plan, build_registry, log_plan
from support.workers import WorkerProcess, assert_lifecycle_invariants, rows, run_row, wait_until

pytestmark = pytest.mark.slow

GRACE_MS = 300
TIMEOUT_S = 2.0  # the runs' budget timeout: deadline = T0 + 2 s + grace
STALE_MISSING = (
    ("incidents", "create_incident"),
    ("logs", "complete_trace"),
    ("orchestrator", "finalize_run"),
    ("policies", "evaluate_policy"),
)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "calls"


@pytest.fixture
def akernel(database_url: str, log_dir: Path) -> Iterator[Kernel]:
    """The test's kernel: submits runs (T0 stores expectations with a short grace), reads
    and sweeps; it runs no worker."""
    settings = make_settings(database_url, grace_period_ms=GRACE_MS)
    k = build_kernel(settings, skills=register_fail_skill(build_registry(log_dir)))
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def workers(database_url: str, log_dir: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(**options: Any) -> WorkerProcess:
        options = {"concurrency": 1, "lease_s": 2.0, "poll_s": 0.1, "fail_skill": 1, **options}
        worker = WorkerProcess(database_url, log_dir, tmp_path / "workers", **options)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.ensure_dead()


def _submit(kernel: Kernel, tenant: TenantContext, plan: dict[str, Any]) -> str:
    budget = RunBudget(timeout_s=TIMEOUT_S)
    return kernel.runs.submit(
        tenant.principal, agent_id=tenant.agent.id, plan=plan, budget=budget
    ).run.id


def _final(kernel: Kernel, run_id: str) -> bool:
    return run_row(kernel, run_id).finished_at_ms is not None


def _sweep_until(kernel: Kernel, run_ids: set[str], timeout: float = 30) -> dict[str, Any]:
    """Sweep (polling) until every run in ``run_ids`` has a stored result."""
    stored: dict[str, ReconciliationResult] = {}

    def done() -> bool:
        for result in kernel.reconciler.sweep():
            assert result.run_id not in stored, f"run {result.run_id} reconciled twice"
            stored[result.run_id] = result
        return run_ids <= stored.keys()

    wait_until(done, timeout=timeout, interval=0.1, what=f"sweep of {len(run_ids)} runs")
    return stored


def _assert_complete_and_clean(kernel: Kernel, run_id: str) -> None:
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None
    assert result.status is ReconciliationStatus.COMPLETE and result.is_clean(), result
    assert (result.missing_actions, result.drift_actions, result.failed_actions) == ((), (), ())
    assert (result.expected_count, result.acked_count, result.invalid) == (5, 5, ())


def _assert_stale(kernel: Kernel, run_id: str, result: ReconciliationResult) -> None:
    assert result.status is ReconciliationStatus.STALE and result.stale_run, result
    assert result.missing_actions == STALE_MISSING
    assert (result.drift_actions, result.failed_actions, result.invalid) == ((), (), ())
    assert kernel.audit.reconciliation(run_id) == result  # stored, round-tripped exactly
    acks = kernel.audit.acks(run_id)
    assert [(a.key(), a.status) for a in acks] == [(("logs", "start_trace"), AckStatus.SUCCESS)]
    settled = {e.key(): e.status for e in kernel.audit.expectations(run_id)}
    assert settled == {
        key: ExpectationStatus.ACKED
        if key == ("logs", "start_trace")
        else ExpectationStatus.MISSING
        for key in STANDARD_KEYS
    }
    incidents = rows(kernel, "SELECT category FROM incidents WHERE run_id = :r", r=run_id)
    assert [r.category for r in incidents] == ["STALE_RUN"]
    topics = [
        r.topic
        for r in rows(kernel, "SELECT topic FROM outbox WHERE run_id = :r", r=run_id)
        if r.topic.startswith("audit.")
    ]
    assert topics == ["audit.reconciliation.stale"]


# -- (a) a normal run ------------------------------------------------------------------------


def test_a_normal_run_is_complete_and_clean_with_all_five_acks(
    akernel: Kernel, workers: Any
) -> None:
    kernel = akernel
    tenant = make_tenant(kernel)
    workers()
    run_id = _submit(kernel, tenant, log_plan(2))
    wait_until(lambda: _final(kernel, run_id), timeout=30, what="run final")
    assert run_row(kernel, run_id).status == "succeeded"

    _assert_complete_and_clean(kernel, run_id)
    acks = kernel.audit.acks(run_id)
    assert Counter((a.key(), a.status) for a in acks) == Counter(
        (key, AckStatus.SUCCESS) for key in STANDARD_KEYS
    )
    by_key = {a.key(): a for a in acks}
    assert by_key[("incidents", "create_incident")].metadata.get("decision") == "none_needed"
    assert rows(kernel, "SELECT id FROM incidents WHERE run_id = :r", r=run_id) == []

    # Past its deadline the sweep stores it COMPLETE and flags nothing.
    stored = _sweep_until(kernel, {run_id})
    assert stored[run_id].status is ReconciliationStatus.COMPLETE
    assert kernel.audit.reconciliation(run_id) == stored[run_id]
    assert rows(kernel, "SELECT id FROM incidents WHERE run_id = :r", r=run_id) == []
    assert not [r for r in rows(kernel, "SELECT topic FROM outbox") if r.topic.startswith("audit.")]
    assert {e.status for e in kernel.audit.expectations(run_id)} == {ExpectationStatus.ACKED}


# -- (e) a duplicate incident ack ----------------------------------------------------------


def test_a_duplicate_incident_ack_is_drift(akernel: Kernel, workers: Any) -> None:
    kernel = akernel
    tenant = make_tenant(kernel)
    workers()
    run_id = _submit(kernel, tenant, fail_plan())
    wait_until(lambda: _final(kernel, run_id), timeout=30, what="run final")
    assert run_row(kernel, run_id).status == "failed"
    _assert_complete_and_clean(kernel, run_id)

    incident_id = rows(kernel, "SELECT id FROM incidents WHERE run_id = :r", r=run_id)[0].id
    kernel.audit.add_ack(
        create_domain_ack(
            run_id,
            "incidents",
            "create_incident",
            result_id=incident_id,
            tenant_id=tenant.principal.tenant_id,
            now_ms=kernel.clock.now_ms(),
        )
    )
    live = kernel.reconciler.reconcile_now(run_id)
    assert live is not None
    assert live.status is ReconciliationStatus.INCOMPLETE and not live.is_clean()
    assert live.drift_actions == (("incidents", "create_incident"),)
    assert (live.missing_actions, live.stale_run, live.acked_count) == ((), False, 6)

    # The sweep stores the drift, opens an AUDIT_MISSING incident and writes a drift event.
    stored = _sweep_until(kernel, {run_id})[run_id]
    assert stored.status is ReconciliationStatus.INCOMPLETE
    assert stored.drift_actions == (("incidents", "create_incident"),)
    categories = sorted(
        r.category
        for r in rows(kernel, "SELECT category FROM incidents WHERE run_id = :r", r=run_id)
    )
    assert categories == ["AUDIT_MISSING", "EXECUTION_FAILURE"]
    audit_topics = [
        r.topic
        for r in rows(kernel, "SELECT topic FROM outbox WHERE run_id = :r", r=run_id)
        if r.topic.startswith("audit.")
    ]
    assert audit_topics == ["audit.reconciliation.drift"]


# -- (b) the only worker SIGKILLed mid-step -------------------------------------------------


def test_the_only_worker_killed_mid_step_leaves_a_stale_run_flagged_once(
    akernel: Kernel, workers: Any, database_url: str, tmp_path: Path
) -> None:
    kernel = akernel
    tenant = make_tenant(kernel)
    worker = workers()
    marker = tmp_path / "blocked"
    run_id = _submit(kernel, tenant, blocking_plan(marker))
    wait_until(marker.exists, timeout=30, what="step 2 to block")
    worker.kill()
    assert worker.wait(timeout=10) == -9
    row = run_row(kernel, run_id)
    assert (row.phase, row.status, row.next_step) == ("EXECUTING", "running", 1)
    before = snapshot(kernel, run_id)
    assert before.acks_with("SUCCESS") == Counter({("logs", "start_trace"): 1})

    # Nothing is due before the deadline; a `runkernel reconcile` process flags it after.
    deadline_ms = kernel.audit.expectations(run_id)[0].deadline_ms
    assert deadline_ms is not None
    if kernel.clock.now_ms() <= deadline_ms:
        assert [r.run_id for r in kernel.reconciler.sweep()] == []
    wait_until(lambda: kernel.clock.now_ms() > deadline_ms, timeout=30, what="deadline")

    env = {**os.environ, "RUNKERNEL_MODE": "test", "RUNKERNEL_DATABASE_URL": database_url}
    cli = subprocess.run(
        [sys.executable, "-m", "runkernel", "reconcile", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    printed = [ReconciliationResult.from_dict(r) for r in json.loads(cli.stdout)]
    assert [r.run_id for r in printed] == [run_id]
    _assert_stale(kernel, run_id, printed[0])

    # Once per run: more sweeps store, open and write nothing more.
    outbox_count = len(rows(kernel, "SELECT seq FROM outbox"))
    incident_count = len(rows(kernel, "SELECT id FROM incidents"))
    assert kernel.reconciler.sweep() == []
    assert kernel.reconciler.sweep() == []
    assert len(rows(kernel, "SELECT seq FROM outbox")) == outbox_count
    assert len(rows(kernel, "SELECT id FROM incidents")) == incident_count
    stale = kernel.audit.reconciliations(status=ReconciliationStatus.STALE)
    assert [r.run_id for r in stale] == [run_id]
    # The run itself is untouched: still the dead worker's, nothing final written.
    assert (run_row(kernel, run_id).phase, run_row(kernel, run_id).status) == (
        "EXECUTING",
        "running",
    )


# -- (c) killed inside the completion transaction ------------------------------------------


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_a_worker_killed_inside_the_completion_before_commit_is_taken_over_cleanly(
    akernel: Kernel, workers: Any, tmp_path: Path, outcome: str
) -> None:
    kernel = akernel
    tenant = make_tenant(kernel)
    marker = tmp_path / "in-commit"
    doomed = workers(lease_s=1.0, completion_block_at="commit", completion_block_marker=marker)
    run_id = _submit(kernel, tenant, log_plan(2) if outcome == "succeeded" else fail_plan())
    wait_until(marker.exists, timeout=30, what="the completion to block before commit")
    survivor = workers(lease_s=1.0)  # alive before the kill
    # Blocked inside the open transaction: nothing of the completion is visible.
    inside = snapshot(kernel, run_id)
    assert (inside.phase, inside.status, inside.finished) == ("EXECUTING", "running", False)
    assert (inside.incidents, inside.evaluations, inside.trace_status) == ((), 0, "started")
    doomed.kill()
    assert doomed.wait(timeout=10) == -9

    wait_until(lambda: _final(kernel, run_id), timeout=45, what="the reclaimed run to finish")
    row = run_row(kernel, run_id)
    assert (row.status, row.attempt, row.lease_owner) == (outcome, 2, None)
    claims = rows(kernel, "SELECT * FROM run_claims WHERE run_id = :r ORDER BY attempt", r=run_id)
    assert [(c.attempt, c.worker_id) for c in claims] == [
        (1, doomed.worker_id),
        (2, survivor.worker_id),
    ]

    final = snapshot(kernel, run_id)
    assert final.incidents == (() if outcome == "succeeded" else ("EXECUTION_FAILURE",))
    assert final.evaluations == 1
    assert final.trace_status == ("completed" if outcome == "succeeded" else "failed")
    verdict = "run.completed" if outcome == "succeeded" else "run.failed"
    topics = Counter(final.topics)
    assert topics[verdict] == 1 and topics["policy.evaluated"] == 1
    assert topics["trace.completed"] == 1 and topics["trace.started"] == 1
    assert topics["incident.created"] == (0 if outcome == "succeeded" else 1)
    # The killed transaction never committed: its acks vanished with it and there is no
    # ROLLED_BACK ack (nothing ran a rollback); exactly one SUCCESS ack of each action.
    assert final.acks_with("SUCCESS") == Counter(STANDARD_KEYS)
    assert final.acks_with("ROLLED_BACK") == Counter()
    _assert_complete_and_clean(kernel, run_id)
    agent = kernel.tenancy.get_agent(tenant.principal, tenant.agent.id)
    assert agent is not None and agent.spent_micros == row.cost_micros
    assert_lifecycle_invariants(kernel)


# -- (d) 5 runs, 3 lose their worker ---------------------------------------------------------


def test_of_five_runs_exactly_the_three_that_lost_their_worker_are_stale(
    akernel: Kernel, workers: Any, tmp_path: Path
) -> None:
    kernel = akernel
    tenant = make_tenant(kernel)
    worker = workers(concurrency=5)
    markers = [tmp_path / f"blocked-{i}" for i in range(3)]
    lost = [_submit(kernel, tenant, blocking_plan(m)) for m in markers]
    kept = [_submit(kernel, tenant, log_plan(2)) for _ in range(2)]
    wait_until(lambda: all(m.exists() for m in markers), timeout=30, what="3 runs blocked")
    wait_until(lambda: all(_final(kernel, r) for r in kept), timeout=30, what="2 runs final")
    worker.kill()
    assert worker.wait(timeout=10) == -9

    stored = _sweep_until(kernel, {*lost, *kept})
    assert {r for r, res in stored.items() if res.status is ReconciliationStatus.STALE} == set(lost)
    for run_id in lost:
        _assert_stale(kernel, run_id, stored[run_id])
    for run_id in kept:
        assert stored[run_id].status is ReconciliationStatus.COMPLETE
        assert run_row(kernel, run_id).status == "succeeded"
    stale_incidents = rows(kernel, "SELECT run_id FROM incidents WHERE category = 'STALE_RUN'")
    assert sorted(r.run_id for r in stale_incidents) == sorted(lost)
    listed = kernel.audit.reconciliations(status=ReconciliationStatus.STALE)
    assert sorted(r.run_id for r in listed) == sorted(lost)
    assert kernel.reconciler.sweep() == []
