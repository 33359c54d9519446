"""runkernel against DBOS on the same database server, in one invocation.

    .venv/bin/python bench/compare.py --db postgres --runs 5000 --repeat 3

Each repeat measures runkernel (``throughput.py``) and then DBOS (``peer_dbos.py``), each in
a fresh subprocess on a fresh database: DBOS keeps process-global state and threads, and a
clean interpreter per side keeps one system's leftovers out of the other's figures. Prints
every repeat, the medians, the ratio runkernel/DBOS and runkernel's submit-to-start p50.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import add_dbos_limit_argument, parser_for
from results import Measurement, median_of

HERE = Path(__file__).resolve().parent


def measure_in_subprocess(script: str, args: argparse.Namespace, *extra: str) -> Measurement:
    """Run ``bench/<script> --json --repeat 1`` with the shared options; parse its result."""
    command = [
        sys.executable,
        str(HERE / script),
        *("--db", args.db, "--runs", str(args.runs), "--steps", str(args.steps)),
        *("--concurrency", str(args.concurrency), "--submitters", str(args.submitters)),
        *("--postgres-url", args.postgres_url, "--repeat", "1", "--json"),
        *(("--rate", str(args.rate)) if args.rate else ()),
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{script} printed no result (exit {done.returncode}):\n{done.stderr}")
    return Measurement.from_json(lines[-1])


def compare(args: argparse.Namespace) -> tuple[list[Measurement], list[Measurement]]:
    ours: list[Measurement] = []
    theirs: list[Measurement] = []
    for index in range(1, args.repeat + 1):
        ours.append(
            measure_in_subprocess(
                "throughput.py", args, "--worker-processes", str(args.worker_processes)
            )
        )
        print(ours[-1].line(f"#{index}"), flush=True)
        theirs.append(measure_in_subprocess("peer_dbos.py", args, "--dbos-limit", args.dbos_limit))
        print(theirs[-1].line(f"#{index}"), flush=True)
    return ours, theirs


def summarize(ours: Sequence[Measurement], theirs: Sequence[Measurement]) -> int:
    rk, dbos = median_of(ours), median_of(theirs)
    if len(ours) > 1:
        print(rk.line("median"))
        print(dbos.line("median"))
    print(
        f"\n{rk.db}: runkernel {rk.runs_per_s:.1f} runs/s, DBOS {dbos.runs_per_s:.1f}"
        f" workflows/s, ratio runkernel/DBOS {rk.runs_per_s / dbos.runs_per_s:.2f}x;"
        f" runkernel submit-to-start p50 {rk.start_p50_ms:.1f} ms"
        f" (DBOS {dbos.start_p50_ms:.1f} ms)"
    )
    failed = [m.system for m in (*ours, *theirs) if not m.ok]
    if failed:
        systems = ", ".join(sorted(set(failed)))
        print(f"error: not every run succeeded in: {systems}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for(__doc__.split("\n\n")[0])
    add_dbos_limit_argument(parser)
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="runkernel only: run the workers as N `runkernel worker` processes "
        "(the scale-out deployment) instead of in the client's process",
    )
    args = parser.parse_args(argv)
    if args.json:
        parser.error("compare.py prints a table; use throughput.py or peer_dbos.py for --json")
    return summarize(*compare(args))


if __name__ == "__main__":
    sys.exit(main())
