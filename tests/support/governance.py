"""Helpers for the governance acceptance tests (issue 3): what another connection sees of
a run's governance record, completion fault hooks, driving a run through the executor in
the test's own thread, and a ``test.fail`` skill for worker processes.

A *snapshot* is read on connections of its own (never the completion's), so taken from
inside a completion fault hook it shows exactly what the rest of the world sees at that
moment: partial governance state must never be in it (DESIGN invariant 1).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from runkernel.adapters.db.engine import READ_ONLY
from runkernel.adapters.skills import SkillRegistry
from runkernel.bootstrap import Kernel
from runkernel.domain.audit import ActionKey, DomainAck
from runkernel.domain.records import Claim
from runkernel.domain.skills import SkillContext, SkillResult
from runkernel.entrypoints.worker import WorkerPool
from runkernel.services.executor import Execution

FAIL_SKILL = "test.fail"
POINTS = ("incident", "policy", "trace", "commit")

# What the completion has acked when the fault hook is called at each point.
ACKED_BEFORE: dict[str, tuple[ActionKey, ...]] = {
    "incident": (("incidents", "create_incident"),),
    "policy": (("incidents", "create_incident"), ("policies", "evaluate_policy")),
    "trace": (
        ("incidents", "create_incident"),
        ("policies", "evaluate_policy"),
        ("logs", "complete_trace"),
    ),
    "commit": (
        ("incidents", "create_incident"),
        ("policies", "evaluate_policy"),
        ("logs", "complete_trace"),
        ("orchestrator", "finalize_run"),
    ),
}
PHASE_AT: dict[str, str] = {
    "incident": "INCIDENT_CREATED",
    "policy": "POLICY_EVALUATED",
    "trace": "TRACE_COMPLETED",
    "commit": "TRACE_COMPLETED",
}
STANDARD_KEYS: tuple[ActionKey, ...] = (
    ("incidents", "create_incident"),
    ("policies", "evaluate_policy"),
    ("logs", "start_trace"),
    ("logs", "complete_trace"),
    ("orchestrator", "finalize_run"),
)
# Topics a completion writes (never those of start: run.started, trace.started, nor
# threshold.exceeded, which the step that crosses a budget writes).
COMPLETION_TOPICS = frozenset(
    {
        "run.completed",
        "run.failed",
        "run.cancelled",
        "incident.created",
        "policy.evaluated",
        "trace.completed",
    }
)

# A plan whose second step fails and aborts the run: the egress guard refuses loopback
# (and nothing listens on port 1 were it allowed), so no connection is even tried.
FAILING_PLAN: dict[str, Any] = {
    "steps": [
        {
            "step_id": "ask",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 20,
            },
        },
        {
            "step_id": "down",
            "skill": "http.request",
            "params": {"method": "GET", "url": "http://127.0.0.1:1/", "timeout_s": 2},
            "on_error": "abort",
            "retries": 0,
        },
    ]
}


def _rows(kernel: Kernel, sql: str, **params: Any) -> list[Any]:
    """Read on a connection of its own, read-only: on SQLite a plain connection would
    BEGIN IMMEDIATE and wait on a completion holding the write lock."""
    with kernel.db.engine.connect() as conn:
        conn = conn.execution_options(**{READ_ONLY: True})
        return list(conn.execute(text(sql), params))


@dataclass(frozen=True)
class Snapshot:
    """A run's governance record as committed, seen from outside the completion."""

    phase: str
    status: str
    finished: bool
    incidents: tuple[str, ...]  # categories
    evaluations: int
    trace_status: str | None
    trace_sink_error: str | None
    topics: tuple[str, ...]  # outbox topics of the run, in seq order
    acks: tuple[tuple[str, str, str], ...]  # (domain, action, status), stored order

    def completion_topics(self) -> list[str]:
        return [t for t in self.topics if t in COMPLETION_TOPICS]

    def acks_with(self, status: str) -> Counter[ActionKey]:
        return Counter((d, a) for d, a, s in self.acks if s == status)


def snapshot(kernel: Kernel, run_id: str) -> Snapshot:
    run = _rows(kernel, "SELECT phase, status, finished_at_ms FROM runs WHERE id = :id", id=run_id)
    assert run, f"no run {run_id}"
    incidents = _rows(
        kernel, "SELECT category FROM incidents WHERE run_id = :id ORDER BY id", id=run_id
    )
    evaluations = _rows(
        kernel, "SELECT count(*) AS n FROM policy_evaluations WHERE run_id = :id", id=run_id
    )
    trace = _rows(kernel, "SELECT status, sink_error FROM traces WHERE run_id = :id", id=run_id)
    topics = _rows(kernel, "SELECT topic FROM outbox WHERE run_id = :id ORDER BY seq", id=run_id)
    acks = kernel.audit.acks(run_id)
    return Snapshot(
        phase=run[0].phase,
        status=run[0].status,
        finished=run[0].finished_at_ms is not None,
        incidents=tuple(r.category for r in incidents),
        evaluations=int(evaluations[0].n),
        trace_status=trace[0].status if trace else None,
        trace_sink_error=trace[0].sink_error if trace else None,
        topics=tuple(r.topic for r in topics),
        acks=tuple((a.domain, a.action, a.status.value) for a in acks),
    )


def assert_nothing_final(snap: Snapshot) -> None:
    """No partial governance state: the run is not final and nothing it owes is visible."""
    assert (snap.phase, snap.status, snap.finished) == ("EXECUTING", "running", False), snap
    assert snap.incidents == (), snap
    assert snap.evaluations == 0, snap
    assert snap.trace_status == "started", snap
    assert snap.completion_topics() == [], snap
    assert snap.acks_with("SUCCESS") == Counter({("logs", "start_trace"): 1}), snap


class FailOnce:
    """A completion fault hook: raises at ``point`` in the first completion, and records
    snapshots — at the moment of the failure (``at_failure``) and at the start of the next
    completion, i.e. after the rollback (``after_rollback``). A completion starts at
    "incident"."""

    def __init__(self, kernel: Kernel, run_id: str, point: str) -> None:
        assert point in POINTS
        self.kernel, self.run_id, self.point = kernel, run_id, point
        self.calls: list[tuple[int, str]] = []  # (completion number, point)
        self.completions = 0
        self.at_failure: Snapshot | None = None
        self.after_rollback: Snapshot | None = None

    def __call__(self, point: str) -> None:
        if point == "incident":
            self.completions += 1
            if self.completions == 2:
                self.after_rollback = snapshot(self.kernel, self.run_id)
        self.calls.append((self.completions, point))
        if self.completions == 1 and point == self.point:
            self.at_failure = snapshot(self.kernel, self.run_id)
            raise InjectedFault(f"injected fault at {point}")


class InjectedFault(RuntimeError):
    pass


class Recorder:
    """A fault hook that never raises and records a snapshot at each point."""

    def __init__(self, kernel: Kernel, run_id: str) -> None:
        self.kernel, self.run_id = kernel, run_id
        self.seen: dict[str, Snapshot] = {}

    def __call__(self, point: str) -> None:
        self.seen[point] = snapshot(self.kernel, self.run_id)


def claim_run(kernel: Kernel, run_id: str, worker_id: str, *, timeout: float = 15) -> Any:
    """Claim ``run_id`` (the only claimable run) in the test's thread the way a worker pool
    does — its own claiming transaction included — polling until the run is claimable
    (e.g. its previous lease ran out). Returns ``(run, claim)``."""
    pool = WorkerPool(kernel, concurrency=1, worker_id=worker_id)  # never started
    try:
        runs = _wait(lambda: pool._claim(10), timeout, f"run {run_id} claimable")
    finally:
        pool._pool.shutdown(wait=False)
    assert [r.id for r in runs] == [run_id], f"claimed {[r.id for r in runs]}, not {run_id}"
    run = runs[0]
    return run, Claim.of(run, worker_id)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def drive(kernel: Kernel, run_id: str, worker_id: str = "test-worker") -> str:
    """Claim and execute one run synchronously through the real executor."""
    run, held = claim_run(kernel, run_id, worker_id)
    return kernel.executor.execute(run, Execution(held))


def ack_counts(acks: list[DomainAck]) -> dict[str, Counter[ActionKey]]:
    out: dict[str, Counter[ActionKey]] = {}
    for ack in acks:
        out.setdefault(ack.status.value, Counter())[ack.key()] += 1
    return out


# -- for worker processes -------------------------------------------------------------------


def register_fail_skill(registry: SkillRegistry) -> SkillRegistry:
    """``test.fail``: a skill that reports an error (a failed step, like one that raises)."""

    def fail_skill(params: dict[str, Any], context: SkillContext) -> SkillResult:
        return SkillResult(error=str(params.get("message", "test.fail always fails")))

    registry.register(FAIL_SKILL, fail_skill, description="always fails")
    return registry


def fail_plan() -> dict[str, Any]:
    return {
        "steps": [
            {"step_id": "first", "skill": "test.log", "params": {"n": 1}},
            {"step_id": "boom", "skill": FAIL_SKILL, "params": {}, "on_error": "abort"},
        ]
    }


def block_hook(point: str, marker: Path) -> Callable[[str], None]:
    """A fault hook for a worker process: at ``point`` of its first completion it writes
    ``marker`` (its pid) and sleeps until killed — inside the completion transaction, after
    everything is written and before the commit when ``point`` is "commit"."""
    fired = threading.Event()

    def hook(at: str) -> None:
        if at != point or fired.is_set():
            return
        fired.set()
        marker.write_text(f"{os.getpid()}\n", encoding="utf-8")
        while True:  # until the test kills the process
            time.sleep(1)

    return hook


@dataclass
class Collected:
    """Events from a bus, in delivery order, with a count of every raw delivery."""

    events: list[Any] = field(default_factory=list)
    raw: Counter[str] = field(default_factory=Counter)
