"""Real runkernel processes for end-to-end tests: started with ``python -m runkernel``,
stopped with SIGTERM (then SIGKILL if they hang) so no test leaks a process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kernel_env(database_url: str) -> dict[str, str]:
    """The environment of a child process: this one's, minus any RUNKERNEL_* the developer
    has set, plus the test database and fast polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNKERNEL_")}
    env.update(
        RUNKERNEL_DATABASE_URL=database_url,
        RUNKERNEL_MODE="test",
        RUNKERNEL_POLL_INTERVAL_S="0.2",
        RUNKERNEL_RETRY_BACKOFF_S="0",
        RUNKERNEL_LEASE_S="5",
        RUNKERNEL_DRAIN_TIMEOUT_S="5",
    )
    return env


def runkernel(*args: str, env: dict[str, str], timeout_s: float = 60) -> str:
    """Run a short command to completion; its stdout, or an assertion with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "runkernel", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"runkernel {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def create_tenant(name: str, env: dict[str, str]) -> dict[str, str]:
    created = json.loads(runkernel("tenants", "create", name, "--json", env=env))
    assert set(created) == {"tenant_id", "api_key"}
    return {str(k): str(v) for k, v in created.items()}


class Process:
    """A long-running runkernel process whose output goes to a log file under tmp."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], tmp: Path, *, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "runkernel", *args],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def output(self) -> str:
        # The child writes to the file descriptor directly; read what has reached the file.
        return self.log_path.read_text()

    def wait_for_output(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never printed {text!r}:\n{self.output}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def wait_healthy(url: str, process: Process, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited early:\n{process.output}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.name} not healthy at {url}:\n{process.output}")
        time.sleep(0.1)
