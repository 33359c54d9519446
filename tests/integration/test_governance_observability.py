"""Trace-sink failure follows ``observability_mode`` (issue 3; DESIGN invariant 4).

STRICT fails the run (``trace_sink_error``, with an incident); DEGRADED lets it succeed
marked ``observability_status=DEGRADED`` with the error on its trace; PERMISSIVE lets it
succeed unmarked. Whatever the mode, the governance record is complete and clean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from conftest import ECHO_PLAN, make_settings, make_tenant
from runkernel.adapters.trace_sinks.sinks import MemoryTraceSink
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import ReconciliationStatus
from support.governance import FAILING_PLAN, STANDARD_KEYS, drive, snapshot
from support.workers import rows, run_row

KernelFactory = Callable[[str], tuple[Kernel, MemoryTraceSink]]


@pytest.fixture
def make_kernel(database_url: str) -> Iterator[KernelFactory]:
    built: list[Kernel] = []

    def make(mode: str) -> tuple[Kernel, MemoryTraceSink]:
        sink = MemoryTraceSink()
        kernel = build_kernel(make_settings(database_url, observability_mode=mode), trace_sink=sink)
        kernel.migrate()
        built.append(kernel)
        return kernel, sink

    yield make
    for kernel in built:
        kernel.close()


def _run(kernel: Kernel, sink: MemoryTraceSink, plan: dict[str, object], failing: bool) -> str:
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    sink.failing = failing
    drive(kernel, run_id)
    return run_id


def _assert_clean_audit(kernel: Kernel, run_id: str) -> None:
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None
    assert result.status is ReconciliationStatus.COMPLETE and result.is_clean(), result
    assert snapshot(kernel, run_id).acks_with("SUCCESS") == Counter(STANDARD_KEYS)


def test_strict_fails_the_run_with_an_incident(make_kernel: KernelFactory) -> None:
    kernel, sink = make_kernel("STRICT")
    run_id = _run(kernel, sink, ECHO_PLAN, failing=True)
    row = run_row(kernel, run_id)
    assert (row.phase, row.status, row.error_code) == ("FAILED", "failed", "trace_sink_error")
    assert "trace sink is down" in (row.error_message or "")
    assert row.observability_status != "OK"
    incidents = rows(
        kernel, "SELECT category, error_code FROM incidents WHERE run_id = :r", r=run_id
    )
    assert [(i.category, i.error_code) for i in incidents] == [
        ("EXECUTION_FAILURE", "trace_sink_error")
    ]
    snap = snapshot(kernel, run_id)
    assert (snap.trace_status, snap.evaluations) == ("failed", 1)
    assert snap.trace_sink_error and "trace sink is down" in snap.trace_sink_error
    assert "run.failed" in snap.topics and "run.completed" not in snap.topics
    _assert_clean_audit(kernel, run_id)


def test_strict_with_a_healthy_sink_succeeds(make_kernel: KernelFactory) -> None:
    kernel, sink = make_kernel("STRICT")
    run_id = _run(kernel, sink, ECHO_PLAN, failing=False)
    row = run_row(kernel, run_id)
    assert (row.status, row.observability_status, row.error_code) == ("succeeded", "OK", None)
    assert [name for name, _ in sink.events if name != "trace.started"] == ["trace.completed"]
    _assert_clean_audit(kernel, run_id)


def test_strict_keeps_a_failed_runs_own_error(make_kernel: KernelFactory) -> None:
    kernel, sink = make_kernel("STRICT")
    run_id = _run(kernel, sink, FAILING_PLAN, failing=True)
    row = run_row(kernel, run_id)
    assert (row.status, row.error_code) == ("failed", "step_failed")
    assert row.observability_status != "OK"
    assert snapshot(kernel, run_id).incidents == ("EXECUTION_FAILURE",)
    _assert_clean_audit(kernel, run_id)


def test_degraded_succeeds_marked_degraded_with_the_error(make_kernel: KernelFactory) -> None:
    kernel, sink = make_kernel("DEGRADED")
    run_id = _run(kernel, sink, ECHO_PLAN, failing=True)
    row = run_row(kernel, run_id)
    assert (row.phase, row.status, row.error_code) == ("COMPLETED", "succeeded", None)
    assert row.observability_status == "DEGRADED"
    snap = snapshot(kernel, run_id)
    assert snap.trace_status == "completed"
    assert snap.trace_sink_error and "trace sink is down" in snap.trace_sink_error
    assert snap.incidents == ()
    trace_event = [t for t in snap.topics if t == "trace.completed"]
    assert trace_event == ["trace.completed"]
    _assert_clean_audit(kernel, run_id)


def test_permissive_succeeds_unmarked(make_kernel: KernelFactory) -> None:
    kernel, sink = make_kernel("PERMISSIVE")
    run_id = _run(kernel, sink, ECHO_PLAN, failing=True)
    row = run_row(kernel, run_id)
    assert (row.phase, row.status, row.error_code) == ("COMPLETED", "succeeded", None)
    assert row.observability_status == "OK"
    snap = snapshot(kernel, run_id)
    assert (snap.trace_status, snap.incidents) == ("completed", ())
    _assert_clean_audit(kernel, run_id)
