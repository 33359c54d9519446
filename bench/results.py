"""One measurement's figures, how they are printed, and the median of repeats."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Measurement:
    """End-to-end figures of one benchmark run. Latencies are in milliseconds."""

    system: str  # "runkernel" | "dbos"
    db: str
    runs: int
    steps: int
    concurrency: int
    seconds: float  # first submit to last final state
    runs_per_s: float
    submit_per_s: float
    start_p50_ms: float  # submit to start (claimed / dequeued)
    start_p99_ms: float
    final_p50_ms: float  # submit to final state
    final_p99_ms: float
    succeeded: int
    load_1m: float  # the machine's 1-minute load average at the end: others share the cores

    @property
    def ok(self) -> bool:
        return self.succeeded == self.runs

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        return cls(**json.loads(text))

    def line(self, label: str = "") -> str:
        status = "ok" if self.ok else f"FAILED {self.runs - self.succeeded}/{self.runs}"
        return (
            f"{self.system:<9} {label:>6} {self.db:<8} {self.runs_per_s:8.1f} runs/s"
            f"  submit {self.submit_per_s:7.1f}/s"
            f"  start p50/p99 {self.start_p50_ms:7.1f}/{self.start_p99_ms:7.1f} ms"
            f"  final p50/p99 {self.final_p50_ms:8.1f}/{self.final_p99_ms:8.1f} ms"
            f"  ({self.runs} runs x {self.steps} steps in {self.seconds:.2f} s,"
            f" load {self.load_1m:.1f}, {status})"
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN when no run got that far."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def median_of(measurements: Sequence[Measurement]) -> Measurement:
    """Field-wise median of repeats; ``succeeded`` keeps the worst repeat."""
    first = measurements[0]
    values: dict[str, object] = {}
    for f in fields(Measurement):
        column = [getattr(m, f.name) for m in measurements]
        if f.name == "succeeded":
            values[f.name] = min(column)
        elif isinstance(column[0], float):
            values[f.name] = statistics.median(column)
        else:
            values[f.name] = getattr(first, f.name)
    return Measurement(**values)  # type: ignore[arg-type]
