"""`runkernel runs cancel|pause|resume` over real HTTP (an in-process API, with and without
workers), on both databases: what each prints (JSON with --json, one line otherwise), that
the run really does what was asked, and that a refusal is one red line with its code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.skills import SkillContext
from runkernel.entrypoints.cli import app
from runkernel.entrypoints.serve import BackgroundServer
from runkernel.entrypoints.worker import WorkerPool
from support.skills import LOG_SKILL, build_registry, log_plan
from support.workers import rows, run_row, wait_until

GATE_SKILL = "test.gate"
runner = CliRunner()


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, params: dict[str, Any], context: SkillContext) -> dict[str, str]:
        self.entered.set()
        assert self.open.wait(30), "gate never opened"
        return {"gate": "passed"}


GATED_PLAN = {
    "steps": [
        {"step_id": "gate", "skill": GATE_SKILL, "params": {}},
        {"step_id": "after", "skill": LOG_SKILL, "params": {}},
    ]
}


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"RUNKERNEL_URL": None, "RUNKERNEL_API_KEY": None})


def assert_clean_failure(result: Result, code: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"error: {code}:" in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.open.set()


@pytest.fixture
def gated(database_url: str, tmp_path: Path, gate: Gate) -> Iterator[Kernel]:
    registry = build_registry(tmp_path / "calls")
    registry.register(GATE_SKILL, gate)
    k = build_kernel(make_settings(database_url), skills=registry)
    k.migrate()
    yield k
    gate.open.set()
    k.close()


@pytest.fixture
def tenant(gated: Kernel) -> TenantContext:
    return make_tenant(gated)


@pytest.fixture
def with_workers(gated: Kernel, tenant: TenantContext) -> Iterator[list[str]]:
    with BackgroundServer(gated, pool=WorkerPool(gated, concurrency=2)) as server:
        yield ["--url", server.url, "--api-key", tenant.api_key]


@pytest.fixture
def without_workers(gated: Kernel, tenant: TenantContext) -> Iterator[list[str]]:
    """Nothing claims: a submitted run stays queued."""
    with BackgroundServer(gated) as server:
        yield ["--url", server.url, "--api-key", tenant.api_key]


def _submit(kernel: Kernel, tenant: TenantContext, plan: Any) -> str:
    return kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id


def test_cancel_a_queued_run_at_once(
    gated: Kernel, tenant: TenantContext, without_workers: list[str]
) -> None:
    run_id = _submit(gated, tenant, log_plan(2))
    result = invoke("runs", "cancel", run_id, "--json", *without_workers)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert (run["id"], run["status"], run["phase"]) == (run_id, "cancelled", "FAILED")
    assert run_row(gated, run_id).status == "cancelled"

    again = invoke("runs", "cancel", run_id, *without_workers)  # final: nothing to cancel
    assert_clean_failure(again, "run_already_final")


def test_cancel_a_running_run_stops_it_before_its_next_step(
    gated: Kernel, tenant: TenantContext, gate: Gate, with_workers: list[str]
) -> None:
    run_id = _submit(gated, tenant, GATED_PLAN)
    assert gate.entered.wait(20), "the run never reached its first step"
    result = invoke("runs", "cancel", run_id, *with_workers)
    assert result.exit_code == 0, result.output
    assert f"run {run_id} is running; cancel requested" in result.stdout
    gate.open.set()
    wait_until(lambda: run_row(gated, run_id).status == "cancelled", timeout=20, what="cancel")
    assert run_row(gated, run_id).next_step == 1  # the second step never ran


def test_pause_then_resume_with_a_note_continues_the_run(
    gated: Kernel, tenant: TenantContext, gate: Gate, with_workers: list[str]
) -> None:
    run_id = _submit(gated, tenant, GATED_PLAN)
    assert gate.entered.wait(20), "the run never reached its first step"
    paused = invoke("runs", "pause", run_id, "--json", *with_workers)
    assert paused.exit_code == 0, paused.output
    body = json.loads(paused.stdout)
    assert (body["status"], body["pause_requested"]) == ("running", True)
    gate.open.set()
    wait_until(lambda: run_row(gated, run_id).status == "paused", timeout=20, what="paused")
    shown = json.loads(invoke("show", run_id, "--json", *with_workers).stdout)
    assert shown["status"] == "paused"

    resumed = invoke("runs", "resume", run_id, "--note", "checked, go on", *with_workers)
    assert resumed.exit_code == 0, resumed.output
    assert f"run {run_id} is" in resumed.stdout
    wait_until(lambda: run_row(gated, run_id).phase == "COMPLETED", timeout=20, what="resumed")
    notes = [
        r.payload
        for r in rows(
            gated,
            "SELECT payload FROM outbox WHERE run_id = :r AND topic = 'run.resumed'",
            r=run_id,
        )
    ]
    assert len(notes) == 1 and "checked, go on" in str(notes[0])


def test_a_human_line_for_a_pause_says_it_comes_at_the_next_step(
    gated: Kernel, tenant: TenantContext, gate: Gate, with_workers: list[str]
) -> None:
    run_id = _submit(gated, tenant, GATED_PLAN)
    assert gate.entered.wait(20), "the run never reached its first step"
    result = invoke("runs", "pause", run_id, *with_workers)
    assert result.exit_code == 0, result.output
    assert "pause requested: it pauses at its next step boundary" in result.stdout
    gate.open.set()
    wait_until(lambda: run_row(gated, run_id).status == "paused", timeout=20, what="paused")


def test_refusals_are_one_line_with_the_api_code(
    gated: Kernel, tenant: TenantContext, without_workers: list[str]
) -> None:
    run_id = _submit(gated, tenant, log_plan(1))
    assert_clean_failure(invoke("runs", "pause", run_id, *without_workers), "run_not_running")
    assert_clean_failure(
        invoke("runs", "resume", run_id, *without_workers), "resume_refused_not_paused"
    )
    unknown = "run_0123456789abcdef0123456789ab"
    assert_clean_failure(invoke("runs", "cancel", unknown, *without_workers), "not_found")
    assert run_row(gated, run_id).status == "queued"  # nothing of it changed


def test_the_run_list_is_still_runkernel_runs(
    gated: Kernel, tenant: TenantContext, without_workers: list[str]
) -> None:
    run_id = _submit(gated, tenant, log_plan(1))
    listed = invoke("runs", "--status", "queued", "--json", *without_workers)
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [run_id]
