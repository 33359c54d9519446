"""Starting worker processes and waiting on the database, always with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text

from runkernel.bootstrap import Kernel
from runkernel.domain.runs import Phase, RunStatus, check_phase_status, check_transition

SCRIPT = Path(__file__).with_name("worker_process.py")
T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class WorkerProcess:
    """One ``worker_process.py`` child; its stdout and stderr go to files in ``workdir``."""

    def __init__(self, database_url: str, log_dir: Path, workdir: Path, **options: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"worker-{id(self)}.out"
        self.stderr_path = workdir / f"worker-{id(self)}.err"
        args = [sys.executable, str(SCRIPT), "--db", database_url, "--log-dir", str(log_dir)]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err)
        self.worker_id = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()[-4000:]

    def wait_ready(self, timeout: float = 30.0) -> str:
        def ready() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.output()}")
            for line in self.stdout_path.read_text().splitlines():
                if line.startswith("READY "):
                    return line.split(" ", 1)[1]
            return None

        self.worker_id = wait_until(ready, timeout=timeout, what="worker READY")
        return self.worker_id

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def ensure_dead(self) -> None:
        """Test clean-up: a process still alive here is killed so nothing leaks."""
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait(timeout=10)


def rows(kernel: Kernel, sql: str, **params: Any) -> list[Any]:
    with kernel.db.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def run_row(kernel: Kernel, run_id: str) -> Any:
    found = rows(kernel, "SELECT * FROM runs WHERE id = :id", id=run_id)
    assert found, f"no run {run_id}"
    return found[0]


def assert_lifecycle_invariants(kernel: Kernel) -> int:
    """Every stored run holds a status its phase allows, and every run's transitions are
    legal one by one and chain from creation to the run's stored (phase, status).
    Returns the number of transitions checked."""
    runs = {r.id: r for r in rows(kernel, "SELECT id, phase, status FROM runs")}
    for r in runs.values():
        check_phase_status(Phase(r.phase), RunStatus(r.status))
    checked = 0
    last: dict[str, tuple[str, str]] = {}
    for t in rows(
        kernel,
        "SELECT run_id, from_phase, from_status, to_phase, to_status FROM run_transitions"
        " ORDER BY id",
    ):
        to = (Phase(t.to_phase), RunStatus(t.to_status))
        check_phase_status(*to)
        if t.from_phase is None:
            assert t.run_id not in last, f"run {t.run_id} created twice"
            assert to == (Phase.CREATED, RunStatus.QUEUED)
        else:
            assert last.get(t.run_id) == (t.from_phase, t.from_status), (
                f"run {t.run_id}: transition from {(t.from_phase, t.from_status)} does not "
                f"follow {last.get(t.run_id)}"
            )
            check_transition(Phase(t.from_phase), RunStatus(t.from_status), *to)
        last[t.run_id] = (t.to_phase, t.to_status)
        checked += 1
    for run_id, r in runs.items():
        assert last.get(run_id) == (r.phase, r.status), (
            f"run {run_id}: transitions end at {last.get(run_id)}, row says {(r.phase, r.status)}"
        )
    return checked
