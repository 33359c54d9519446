"""A worker process for tests: ``python worker_process.py --db URL --log-dir DIR ...``.

Builds a kernel on the given database with the logging test skills, runs a
:class:`WorkerPool` and writes ``READY <worker_id>`` to stdout once it is claiming.
SIGTERM stops the pool (draining for ``--drain-timeout`` seconds) and the process exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runkernel.bootstrap import build_kernel
from runkernel.config import Settings
from runkernel.entrypoints.worker import WorkerPool
from support.skills import build_registry


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--log-dir", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--lease-s", type=float, default=5.0)
    parser.add_argument("--poll-s", type=float, default=0.2)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    args = parser.parse_args()

    settings = Settings(
        database_url=args.db,
        mode="test",  # type: ignore[arg-type]
        worker_concurrency=args.concurrency,
        lease_s=args.lease_s,
        poll_interval_s=args.poll_s,
        max_attempts=args.max_attempts,
        drain_timeout_s=args.drain_timeout,
        retry_backoff_s=0.0,
    )
    kernel = build_kernel(settings, skills=build_registry(args.log_dir))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pool = WorkerPool(kernel, concurrency=args.concurrency).start()
    print(f"READY {pool.worker_id}", flush=True)
    while not stop.wait(0.1):
        pass
    pool.stop()
    kernel.close()
    print(f"STOPPED claimed={pool.claimed} finished={pool.finished}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
