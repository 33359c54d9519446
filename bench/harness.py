"""What every measured system shares: the workload's size, client threads that submit while
workers run, the wall-clock span, the figures built from per-run timestamps, and the CLI."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from databases import DB_KINDS, DbKind, default_postgres_url
from results import Measurement, median_of, percentile

POLL_S = 0.02


@dataclass(frozen=True)
class Workload:
    runs: int
    steps: int = 3
    concurrency: int = 8
    submitters: int = 1
    rate: float | None = None  # submissions per second over all clients; None = flat out
    timeout_s: float = 900.0

    def shares(self) -> list[int]:
        """How many runs each client thread submits."""
        base, extra = divmod(self.runs, self.submitters)
        return [base + (1 if i < extra else 0) for i in range(self.submitters)]


@dataclass(frozen=True)
class Span:
    """Client wall clock: first submit, last submit returned, all runs seen final."""

    started: float
    submitted: float
    finished: float

    @property
    def submit_s(self) -> float:
        return self.submitted - self.started

    @property
    def total_s(self) -> float:
        return self.finished - self.started


def submit_and_wait(
    workload: Workload,
    submit: Callable[[], object],
    all_final: Callable[[], bool],
) -> Span:
    """Call ``submit`` ``workload.runs`` times from client threads (paced to
    ``workload.rate`` if set), then poll ``all_final``.

    The end is when the poll first sees every run final, so it is late by at most
    ``POLL_S`` plus one query: DBOS on SQLite stores whole seconds, so the database's own
    timestamps cannot give a millisecond span for every system."""

    interval = workload.submitters / workload.rate if workload.rate else 0.0

    def client(count: int) -> None:
        due = time.perf_counter()
        for _ in range(count):
            submit()
            due += interval
            time.sleep(max(0.0, due - time.perf_counter()))

    clients = [
        threading.Thread(target=client, args=(share,), name=f"bench-client-{i}")
        for i, share in enumerate(workload.shares())
    ]
    started = time.perf_counter()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    submitted = time.perf_counter()
    deadline = submitted + workload.timeout_s
    while not all_final():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"runs still not final after {workload.timeout_s:.0f} s")
        time.sleep(POLL_S)
    return Span(started, submitted, time.perf_counter())


def build_measurement(
    system: str,
    db: str,
    workload: Workload,
    timings: Sequence[tuple[int, int | None, int | None]],
    *,
    span: Span,
    succeeded: int,
) -> Measurement:
    """Figures from the client's span and per-run ``(created, started, finished)`` epoch ms."""
    started = [t[1] - t[0] for t in timings if t[1] is not None]
    final = [t[2] - t[0] for t in timings if t[2] is not None]
    return Measurement(
        system=system,
        db=db,
        runs=workload.runs,
        steps=workload.steps,
        concurrency=workload.concurrency,
        seconds=span.total_s,
        runs_per_s=workload.runs / span.total_s,
        submit_per_s=workload.runs / span.submit_s,
        start_p50_ms=percentile(started, 50),
        start_p99_ms=percentile(started, 99),
        final_p50_ms=percentile(final, 50),
        final_p99_ms=percentile(final, 99),
        succeeded=succeeded,
        load_1m=os.getloadavg()[0],
    )


# -- command line -------------------------------------------------------------------------
Measure = Callable[[DbKind, Workload, str], Measurement]
DbosLimit = Literal["executor", "queue"]
DBOS_LIMITS: tuple[DbosLimit, ...] = ("executor", "queue")


def parser_for(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--db", choices=DB_KINDS, default="sqlite")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="runs executed at once")
    parser.add_argument("--submitters", type=int, default=1, help="client threads submitting")
    parser.add_argument(
        "--rate", type=float, help="submissions per second (default: as fast as possible)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(),
        help="server on which a fresh database is created (env RUNKERNEL_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--json", action="store_true", help="print only the median, as JSON")
    return parser


def add_dbos_limit_argument(parser: argparse.ArgumentParser) -> None:
    """Where DBOS applies ``--concurrency`` (see ``peer_dbos.measure_dbos``); here so that
    ``compare.py`` can forward it without importing DBOS."""
    parser.add_argument(
        "--dbos-limit",
        choices=DBOS_LIMITS,
        default="executor",
        help="apply --concurrency to DBOS's executor threads or to its queue",
    )


def workload_from(args: argparse.Namespace) -> Workload:
    return Workload(args.runs, args.steps, args.concurrency, args.submitters, args.rate)


def repeat(measure: Measure, args: argparse.Namespace) -> list[Measurement]:
    """Measure ``args.repeat`` times, printing each result unless ``--json``."""
    measurements: list[Measurement] = []
    for index in range(1, args.repeat + 1):
        measurements.append(measure(args.db, workload_from(args), args.postgres_url))
        if not args.json:
            print(measurements[-1].line(f"#{index}"), flush=True)
    return measurements


def report(measurements: Sequence[Measurement], *, as_json: bool) -> int:
    """Print the median of the repeats; exit status 1 if any run did not succeed."""
    middle = median_of(measurements)
    if as_json:
        print(middle.to_json())
    elif len(measurements) > 1:
        print(middle.line("median"))
    if not all(m.ok for m in measurements):
        print(f"error: not every {middle.system} run succeeded", file=sys.stderr)
        return 1
    return 0


def main_for(measure: Measure, description: str, argv: Sequence[str] | None) -> int:
    args = parser_for(description).parse_args(argv)
    return report(repeat(measure, args), as_json=args.json)
