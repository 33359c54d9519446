"""Trace sinks: where finished traces are exported. ``none`` keeps them in runkernel's
database only; ``log`` writes one JSON line per trace event; ``http`` POSTs them to a
collector; ``memory`` (tests) keeps them in a list and can be told to fail."""

from __future__ import annotations

from runkernel.adapters.trace_sinks.sinks import (
    HttpTraceSink,
    LogTraceSink,
    MemoryTraceSink,
    NullTraceSink,
    build_trace_sink,
)

__all__ = ["HttpTraceSink", "LogTraceSink", "MemoryTraceSink", "NullTraceSink", "build_trace_sink"]
