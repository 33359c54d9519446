"""Atomic completion under injected faults (issue 3 acceptance; DESIGN invariants 1, 2, 5).

For each completion point ("incident", "policy", "trace", "commit") the completion of a
succeeding and of a failing run is made to raise there, once. Another connection — opened
by the fault hook itself at the moment of failure, and again when the retry starts, i.e.
after the rollback — must see no partial governance state; the rollback leaves a
ROLLED_BACK ack for each action acked before the fault; the relay publishes nothing of the
failed attempt; the executor's retry completes the run with exactly one incident decision,
one evaluation and one trace completion, and the live reconciliation is clean despite the
ROLLED_BACK acks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import ECHO_PLAN, make_settings, make_tenant
from runkernel.adapters.bus import InProcessBus
from runkernel.adapters.trace_sinks.sinks import MemoryTraceSink
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import ReconciliationStatus
from runkernel.domain.events import Deduplicator
from runkernel.errors import TransactionFailed
from support.governance import (
    ACKED_BEFORE,
    COMPLETION_TOPICS,
    FAILING_PLAN,
    PHASE_AT,
    POINTS,
    STANDARD_KEYS,
    FailOnce,
    InjectedFault,
    Recorder,
    assert_nothing_final,
    drive,
    snapshot,
)
from support.relay_process import BusLog
from support.workers import assert_lifecycle_invariants, rows

EXPECTED_TOPICS = {
    "succeeded": Counter({"policy.evaluated": 1, "trace.completed": 1, "run.completed": 1}),
    "failed": Counter(
        {"incident.created": 1, "policy.evaluated": 1, "trace.completed": 1, "run.failed": 1}
    ),
}


@pytest.fixture
def sink() -> MemoryTraceSink:
    return MemoryTraceSink()


@pytest.fixture
def gkernel(database_url: str, sink: MemoryTraceSink) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url, completion_retries=2), trace_sink=sink)
    k.migrate()
    yield k
    k.close()


def _spy_failures(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> list[TransactionFailed]:
    """Record every TransactionFailed the executor gets from the completion."""
    caught: list[TransactionFailed] = []
    original = kernel.completion.complete

    def complete(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except TransactionFailed as exc:
            caught.append(exc)
            raise

    monkeypatch.setattr(kernel.completion, "complete", complete)
    return caught


def _drain(kernel: Kernel) -> None:
    while kernel.relay.relay_once():
        pass


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
@pytest.mark.parametrize("point", POINTS)
def test_fault_at_each_point_leaves_nothing_partial_and_the_retry_completes_once(
    gkernel: Kernel,
    sink: MemoryTraceSink,
    point: str,
    outcome: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = gkernel
    tenant = make_tenant(kernel)
    plan = ECHO_PLAN if outcome == "succeeded" else FAILING_PLAN
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    bus, log = BusLog.on(kernel.bus)
    hook = FailOnce(kernel, run_id, point)
    kernel.completion.fault = hook
    caught = _spy_failures(kernel, monkeypatch)

    assert drive(kernel, run_id) == outcome

    # The first completion stopped at the fault; the retry passed every point once.
    upto = POINTS[: POINTS.index(point) + 1]
    assert hook.calls == [(1, p) for p in upto] + [(2, p) for p in POINTS]

    # TransactionFailed names the phase reached and keeps the cause.
    assert len(caught) == 1
    failure = caught[0]
    assert failure.phase == PHASE_AT[point]
    assert isinstance(failure.cause, InjectedFault)
    if outcome == "failed":
        assert "incident_id" in failure.partial_results
    if point != "incident":
        assert "evaluation" in failure.partial_results

    # At the moment of failure, from another connection: nothing partial is visible.
    assert hook.at_failure is not None
    assert_nothing_final(hook.at_failure)
    assert hook.at_failure.acks_with("ROLLED_BACK") == Counter()
    # After the rollback (as the retry starts): still nothing, plus one ROLLED_BACK ack for
    # each action acked before the fault, and nothing else.
    assert hook.after_rollback is not None
    assert_nothing_final(hook.after_rollback)
    assert hook.after_rollback.acks_with("ROLLED_BACK") == Counter(ACKED_BEFORE[point])

    # The retry committed exactly one set of governance records.
    final = snapshot(kernel, run_id)
    if outcome == "succeeded":
        assert (final.phase, final.status, final.trace_status) == (
            "COMPLETED",
            "succeeded",
            "completed",
        )
        assert final.incidents == ()
    else:
        assert (final.phase, final.status, final.trace_status) == ("FAILED", "failed", "failed")
        assert final.incidents == ("EXECUTION_FAILURE",)
    assert final.evaluations == 1
    completion_topics = Counter(final.completion_topics())
    assert completion_topics == EXPECTED_TOPICS[outcome]
    assert final.acks_with("SUCCESS") == Counter(STANDARD_KEYS)
    assert final.acks_with("ROLLED_BACK") == Counter(ACKED_BEFORE[point])
    assert final.acks_with("FAILED") == Counter()

    acks = kernel.audit.acks(run_id)
    incident_ack = next(
        a for a in acks if a.key() == ("incidents", "create_incident") and a.is_success()
    )
    if outcome == "succeeded":
        assert incident_ack.metadata.get("decision") == "none_needed"
        assert incident_ack.result_id is None
    else:
        ids = [r.id for r in rows(kernel, "SELECT id FROM incidents WHERE run_id = :r", r=run_id)]
        assert incident_ack.result_id == ids[0]
    # Every ROLLED_BACK ack says why and names the ack it undoes.
    for ack in acks:
        if ack.is_rolled_back():
            assert ack.rolled_back and "injected fault" in (ack.rollback_reason or "")
            assert ack.rolls_back_id is not None

    # The live reconciliation is COMPLETE and clean despite the ROLLED_BACK acks.
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None
    assert result.status is ReconciliationStatus.COMPLETE and result.is_clean()
    assert (result.missing_actions, result.drift_actions, result.failed_actions) == ((), (), ())
    assert (result.expected_count, result.acked_count, result.stale_run) == (5, 5, False)

    # The trace export of the failed try was compensated, once.
    exported = Counter(name for name, _ in sink.events)
    assert exported.pop("trace.started", 0) <= 1  # exported at start, or not at all
    assert exported == Counter({"trace.completed": 2, "trace.rolled_back": 1})

    # Budget settled once; the lifecycle is one legal chain.
    run = kernel.runs.get(tenant.principal, run_id)
    agent = kernel.tenancy.get_agent(tenant.principal, tenant.agent.id)
    assert agent is not None and agent.spent_micros == run.cost_micros
    assert_lifecycle_invariants(kernel)

    # The relay publishes what committed — each event once, none of the failed try.
    _drain(kernel)
    dedupe = Deduplicator()
    delivered = [e for e in log.events if e.run_id == run_id and dedupe.first_time(e.id)]
    assert [e.topic for e in delivered] == list(final.topics)
    published = Counter(e.topic for e in delivered if e.topic in COMPLETION_TOPICS)
    assert published == EXPECTED_TOPICS[outcome]
    assert bus is kernel.bus and isinstance(bus, InProcessBus)


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_nothing_of_a_completion_is_visible_before_its_commit(
    gkernel: Kernel, outcome: str
) -> None:
    """Without faults: at every point, up to and including "commit", another connection
    still sees the run unfinished with no governance record (the SQL acks too)."""
    kernel = gkernel
    tenant = make_tenant(kernel)
    plan = ECHO_PLAN if outcome == "succeeded" else FAILING_PLAN
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    recorder = Recorder(kernel, run_id)
    kernel.completion.fault = recorder
    assert drive(kernel, run_id) == outcome
    assert list(recorder.seen) == list(POINTS)
    for seen in recorder.seen.values():
        assert_nothing_final(seen)
    final = snapshot(kernel, run_id)
    assert final.finished and final.evaluations == 1
    assert final.acks_with("SUCCESS") == Counter(STANDARD_KEYS)
    assert final.acks_with("ROLLED_BACK") == Counter()
