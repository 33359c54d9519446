"""The trace sink adapters. A sink raises ``TraceSinkError`` when it cannot take a trace;
the caller applies the observability mode."""

from __future__ import annotations

import json
import logging
import threading

import httpx

from runkernel.domain.traces import Trace
from runkernel.errors import ConfigurationError, TraceSinkError

log = logging.getLogger("runkernel.traces")


class NullTraceSink:
    """Traces live in runkernel's database only."""

    def export(self, event: str, trace: Trace) -> None:
        return None


class LogTraceSink:
    """One JSON line per trace event on the ``runkernel.traces`` logger."""

    def export(self, event: str, trace: Trace) -> None:
        log.info(json.dumps({"event": event, **trace.to_dict()}, separators=(",", ":")))


class HttpTraceSink:
    """POSTs each trace event as JSON to a collector URL; any non-2xx is a failure."""

    def __init__(self, url: str, client: httpx.Client) -> None:
        self._url = url
        self._client = client

    def export(self, event: str, trace: Trace) -> None:
        try:
            response = self._client.post(self._url, json={"event": event, **trace.to_dict()})
        except httpx.HTTPError as exc:
            raise TraceSinkError(f"trace sink {self._url} unreachable: {exc}") from exc
        if not response.is_success:
            raise TraceSinkError(f"trace sink {self._url} answered HTTP {response.status_code}")


class MemoryTraceSink:
    """Keeps what it receives; ``failing = True`` makes every export raise (tests)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Trace]] = []
        self.failing = False
        self._lock = threading.Lock()

    def export(self, event: str, trace: Trace) -> None:
        if self.failing:
            raise TraceSinkError("trace sink is down (MemoryTraceSink.failing)")
        with self._lock:
            self.events.append((event, trace))


def build_trace_sink(
    kind: str, *, url: str | None, client: httpx.Client | None = None
) -> NullTraceSink | LogTraceSink | HttpTraceSink | MemoryTraceSink:
    if kind == "none":
        return NullTraceSink()
    if kind == "log":
        return LogTraceSink()
    if kind == "memory":
        return MemoryTraceSink()
    if kind == "http":
        if not url:
            raise ConfigurationError("RUNKERNEL_TRACE_SINK=http needs RUNKERNEL_TRACE_SINK_URL")
        return HttpTraceSink(url, client or httpx.Client(timeout=10.0))
    raise ConfigurationError(f"unknown trace sink {kind!r}: none, log, http or memory")
