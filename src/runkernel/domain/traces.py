"""Traces: what a run did, exported to an observability sink, and what a failing sink means.

The trace record in runkernel's own database is written atomically with the run's final
status; the *sink* (an external observability backend) is a port that can fail, and
``ObservabilityMode`` decides what its failure does to the run (DESIGN invariant 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runkernel.domain.records import Run


class ObservabilityMode(StrEnum):
    STRICT = "STRICT"  # a failing sink fails the run
    DEGRADED = "DEGRADED"  # the run goes on, marked observability_status=DEGRADED
    PERMISSIVE = "PERMISSIVE"  # the run goes on, unmarked


class TraceStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class SinkVerdict:
    """What to do after the sink failed: fail the run, or go on with this status."""

    fail_run: bool
    observability_status: str
    error: str


def on_sink_failure(mode: ObservabilityMode, error: str) -> SinkVerdict:
    if mode is ObservabilityMode.STRICT:
        return SinkVerdict(True, "FAILED", error)
    if mode is ObservabilityMode.DEGRADED:
        return SinkVerdict(False, "DEGRADED", error)
    return SinkVerdict(False, "OK", error)


@dataclass(frozen=True, slots=True)
class Trace:
    """A run as an observability backend sees it: one span per executed step."""

    run_id: str
    tenant_id: str
    agent_id: str
    status: TraceStatus
    started_at_ms: int
    completed_at_ms: int | None = None
    spans: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tenant_id": self.tenant_id,
            "agent_id": self.agent_id,
            "status": self.status.value,
            "started_at_ms": self.started_at_ms,
            "completed_at_ms": self.completed_at_ms,
            "spans": list(self.spans),
        }


def trace_status_for(run_status: str) -> TraceStatus:
    if run_status == "succeeded":
        return TraceStatus.COMPLETED
    if run_status == "cancelled":
        return TraceStatus.ABORTED
    return TraceStatus.FAILED


def trace_of(run: Run, status: TraceStatus, *, started_at_ms: int, now_ms: int | None) -> Trace:
    spans = tuple(
        {
            "step_id": s.step_id,
            "skill": s.skill,
            "status": s.status,
            "attempt": s.attempt,
            "tries": s.tries,
            "duration_ms": s.duration_ms,
            "usage": s.usage.to_dict(),
            "cost_micros": s.cost_micros,
            "error": s.error,
            "finished_at_ms": s.finished_at_ms,
        }
        for s in run.steps
    )
    return Trace(run.id, run.tenant_id, run.agent_id, status, started_at_ms, now_ms, spans)
