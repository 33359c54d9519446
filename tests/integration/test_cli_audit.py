"""The operator's audit commands against a real database: ``audit RUN_ID`` shows the
record and verdicts, ``reconcile`` sweeps once, ``reconciler`` sweeps until SIGTERM.

The run under audit is submitted with a 1 ms timeout and no grace and never executed
(no worker), so it goes stale at once — what the sweep exists to catch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ECHO_PLAN, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import STANDARD_EXPECTATIONS
from runkernel.domain.records import RunBudget
from runkernel.entrypoints.cli import app
from support.workers import wait_until

runner = CliRunner()
STANDARD = sorted([domain, action] for domain, action in STANDARD_EXPECTATIONS)


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"RUNKERNEL_API_KEY": None})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def kernel(database_url: str) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url, grace_period_ms=0))
    k.migrate()
    yield k
    k.close()


def overdue_run(kernel: Kernel) -> str:
    tenant = make_tenant(kernel)
    run = kernel.runs.submit(
        tenant.principal,
        agent_id=tenant.agent.id,
        plan=ECHO_PLAN,
        budget=RunBudget(timeout_s=0.001),
    ).run
    wait_until(
        lambda: run.id in kernel.audit.get_pending_run_ids(kernel.clock.now_ms()),
        timeout=10,
        what="the run's deadline to pass",
    )
    return run.id


def test_audit_shows_the_live_verdict_then_reconcile_stores_it(
    kernel: Kernel, database_url: str
) -> None:
    run_id = overdue_run(kernel)
    db = ("--database-url", database_url)

    code, out, err = invoke("audit", run_id, "--json", *db)
    assert code == 0, err
    before = json.loads(out)
    assert before["run"]["status"] == "queued"
    assert sorted([e["domain"], e["action"]] for e in before["expectations"]) == STANDARD
    assert before["acks"] == []
    assert before["reconciliation"]["status"] == "STALE" and before["stored"] is None

    code, out, err = invoke("reconcile", *db)
    assert code == 0, err
    assert run_id in out and "STALE" in out and "orchestrator/finalize_run" in out

    code, out, _ = invoke("reconcile", *db)
    assert code == 0 and "no run past its deadline" in out  # once per run

    code, out, _ = invoke("audit", run_id, "--json", *db)
    after = json.loads(out)
    assert after["stored"]["status"] == "STALE"
    assert sorted(after["stored"]["missing_actions"]) == STANDARD
    assert {e["status"] for e in after["expectations"]} == {"MISSING"}

    code, out, _ = invoke("audit", run_id, *db)
    assert code == 0
    assert "orchestrator/finalize_run" in out and "MISSING" in out and "STALE" in out


def test_reconcile_json_lists_the_stored_results(kernel: Kernel, database_url: str) -> None:
    run_id = overdue_run(kernel)
    code, out, err = invoke("reconcile", "--json", "--database-url", database_url)
    assert code == 0, err
    [result] = json.loads(out)
    assert (result["run_id"], result["status"], result["stale_run"]) == (run_id, "STALE", True)
    assert kernel.audit.reconciliation(run_id) is not None


def test_audit_of_an_unknown_run_fails_with_one_line(kernel: Kernel, database_url: str) -> None:
    code, out, err = invoke("audit", "run_nobody", "--database-url", database_url)
    assert code == 1 and out == ""
    assert "not_found" in err and "run_nobody" in err


def test_the_reconciler_sweeps_until_sigterm(
    kernel: Kernel, database_url: str, tmp_path: Path
) -> None:
    run_id = overdue_run(kernel)
    output = tmp_path / "reconciler.out"
    command = [sys.executable, "-m", "runkernel", "reconciler", "--interval-s", "0.1"]
    env = {**os.environ, "RUNKERNEL_DATABASE_URL": database_url}
    with open(output, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: "reconciler started" in output.read_text(), timeout=30, what="start")
        wait_until(
            lambda: kernel.audit.reconciliation(run_id), timeout=30, what="the sweep to store"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, output.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = output.read_text()
    assert "reconciler stopped:" in text and "1 runs reconciled" in text, text
    stored = kernel.audit.reconciliation(run_id)
    assert stored is not None and stored.status.value == "STALE"
