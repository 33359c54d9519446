"""`serve` and `api` bind their port before anything else starts: on a port already in
use they exit with a clear error, and no worker has claimed a run."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conftest import ECHO_PLAN, make_settings, make_tenant
from e2e.processes import kernel_env
from runkernel.bootstrap import build_kernel
from runkernel.domain.runs import RunStatus


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["serve", "api"])
def test_a_port_in_use_fails_before_any_run_is_claimed(
    database_url: str, taken_port: int, command: str
) -> None:
    kernel = build_kernel(make_settings(database_url))
    try:
        kernel.migrate()
        tenant = make_tenant(kernel)
        run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN).run

        done = subprocess.run(
            [sys.executable, "-m", "runkernel", command, "--port", str(taken_port)],
            env=kernel_env(database_url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        message = " ".join(done.stderr.split())
        assert f"port_in_use: port {taken_port} is in use on 127.0.0.1" in message
        assert "Traceback" not in message
        assert "started" not in done.stdout

        after = kernel.runs.get(tenant.principal, run.id)
        assert (after.status, after.attempt, after.lease_owner) == (RunStatus.QUEUED, 0, None)
    finally:
        kernel.close()
