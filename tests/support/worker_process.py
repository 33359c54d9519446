"""A worker process for tests: ``python worker_process.py --db URL --log-dir DIR ...``.

Builds a kernel on the given database with the logging test skills, runs a
:class:`WorkerPool` and writes ``READY <worker_id>`` to stdout once it is claiming.
SIGTERM stops the pool (draining for ``--drain-timeout`` seconds) and the process exits 0.

Options for the governance tests: ``--fail-skill 1`` also registers ``test.fail``;
``--completion-block-at POINT --completion-block-marker PATH`` installs a completion fault
hook that, at POINT ("incident", "policy", "trace" or "commit") of the first completion,
writes PATH and sleeps inside the open completion transaction until the process is killed.
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
    parser.add_argument("--fail-skill", type=int, default=0)  # 1: register test.fail
    parser.add_argument("--completion-block-at", default=None)
    parser.add_argument("--completion-block-marker", type=Path, default=None)
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
    registry = build_registry(args.log_dir)
    if args.fail_skill:
        from support.governance import register_fail_skill

        register_fail_skill(registry)
    kernel = build_kernel(settings, skills=registry)
    if args.completion_block_at is not None:
        from support.governance import block_hook

        assert args.completion_block_marker is not None, "--completion-block-marker is needed"
        kernel.completion.fault = block_hook(args.completion_block_at, args.completion_block_marker)
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
