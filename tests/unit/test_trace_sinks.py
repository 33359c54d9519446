"""Trace sinks and what a failing one means under each observability mode."""

from __future__ import annotations

import httpx
import pytest

from runkernel.adapters.trace_sinks import HttpTraceSink, MemoryTraceSink, build_trace_sink
from runkernel.domain.traces import ObservabilityMode, Trace, TraceStatus, on_sink_failure
from runkernel.errors import ConfigurationError, TraceSinkError

TRACE = Trace("run_1", "ten_1", "agt_1", TraceStatus.COMPLETED, 1, 2, ({"step_id": "a"},))


def test_modes_decide_what_a_sink_failure_does() -> None:
    assert on_sink_failure(ObservabilityMode.STRICT, "down").fail_run is True
    degraded = on_sink_failure(ObservabilityMode.DEGRADED, "down")
    assert (degraded.fail_run, degraded.observability_status) == (False, "DEGRADED")
    permissive = on_sink_failure(ObservabilityMode.PERMISSIVE, "down")
    assert (permissive.fail_run, permissive.observability_status) == (False, "OK")


def test_memory_sink_keeps_events_and_can_fail() -> None:
    sink = MemoryTraceSink()
    sink.export("trace.completed", TRACE)
    assert sink.events == [("trace.completed", TRACE)]
    sink.failing = True
    with pytest.raises(TraceSinkError):
        sink.export("trace.completed", TRACE)
    assert len(sink.events) == 1


def test_http_sink_posts_json_and_maps_errors() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        seen.append(json.loads(request.content))
        return httpx.Response(204 if len(seen) == 1 else 503)

    sink = HttpTraceSink(
        "http://collector/traces", httpx.Client(transport=httpx.MockTransport(handler))
    )
    sink.export("trace.started", TRACE)
    assert seen[0]["event"] == "trace.started" and seen[0]["run_id"] == "run_1"
    with pytest.raises(TraceSinkError, match="503"):
        sink.export("trace.completed", TRACE)


def test_http_sink_needs_a_url() -> None:
    with pytest.raises(ConfigurationError, match="TRACE_SINK_URL"):
        build_trace_sink("http", url=None, client=httpx.Client())
    with pytest.raises(ConfigurationError, match="unknown trace sink"):
        build_trace_sink("kafka", url=None, client=httpx.Client())
