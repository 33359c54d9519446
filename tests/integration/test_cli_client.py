"""The tenant-facing commands over real HTTP (an in-process API and worker pool), through
typer's CliRunner: what they print, and how they fail (one red line, exit 1, no traceback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from conftest import ECHO_PLAN, TenantContext
from runkernel.bootstrap import Kernel
from runkernel.entrypoints.cli import app
from runkernel.entrypoints.serve import BackgroundServer, bind_socket
from runkernel.entrypoints.worker import WorkerPool
from support.workers import wait_until

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"RUNKERNEL_URL": None, "RUNKERNEL_API_KEY": None})


def assert_clean_failure(result: Result, code: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"error: {code}:" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture
def server(kernel: Kernel) -> Iterator[BackgroundServer]:
    with BackgroundServer(kernel, pool=WorkerPool(kernel, concurrency=2)) as background:
        yield background


@pytest.fixture
def remote(server: BackgroundServer, tenant: TenantContext) -> list[str]:
    return ["--url", server.url, "--api-key", tenant.api_key]


def test_unreachable_server_is_one_clear_line() -> None:
    with bind_socket() as sock:  # a port that was free a moment ago and now is closed
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = invoke("runs", "--url", url, "--api-key", "rk_x")
    assert_clean_failure(result, "unreachable")
    assert f"not reachable at {url}" in result.stderr


def test_missing_api_key_says_where_to_get_one() -> None:
    result = invoke("runs")
    assert_clean_failure(result, "no_api_key")
    assert "runkernel tenants create" in result.stderr


def test_api_errors_print_code_and_message(server: BackgroundServer) -> None:
    result = invoke("agents", "list", "--url", server.url, "--api-key", "rk_wrong")
    assert_clean_failure(result, "unauthenticated")


def test_show_unknown_run_is_not_found(remote: list[str]) -> None:
    result = invoke("show", "run_0123456789abcdef0123456789ab", *remote)
    assert_clean_failure(result, "not_found")


def test_agents_create_and_list(remote: list[str]) -> None:
    created = invoke("agents", "create", "writer", "--budget-usd", "2.5", "--json", *remote)
    assert created.exit_code == 0, created.output
    agent = json.loads(created.stdout)
    assert agent["name"] == "writer" and agent["budget_usd"] == 2.5
    listed = invoke("agents", "list", *remote)
    assert listed.exit_code == 0
    assert agent["id"] in listed.stdout and "writer" in listed.stdout


def test_submit_wait_shows_the_run_and_exits_0(
    remote: list[str], tenant: TenantContext, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(ECHO_PLAN))
    result = invoke("submit", str(plan), "--agent", tenant.agent.id, "--wait", *remote)
    assert result.exit_code == 0, result.output
    for text in ("succeeded", "COMPLETED", "ask", "pick", "again", "transitions"):
        assert text in result.stdout

    runs = invoke("runs", "--status", "succeeded", "--json", *remote)
    page = json.loads(runs.stdout)
    assert len(page["runs"]) == 1 and page["runs"][0]["status"] == "succeeded"
    shown = json.loads(invoke("show", page["runs"][0]["id"], "--json", *remote).stdout)
    assert [s["step_id"] for s in shown["steps"]] == ["ask", "pick", "again"]


def test_submit_file_with_agent_and_budget(
    remote: list[str], tenant: TenantContext, tmp_path: Path
) -> None:
    """A whole submission in a JSON file; flags override its budget."""
    body = {"agent_id": tenant.agent.id, "plan": ECHO_PLAN, "budget": {"max_steps": 1}}
    (tmp_path / "run.json").write_text(json.dumps(body))
    result = invoke(
        "submit", str(tmp_path / "run.json"), "--max-steps", "2", "--wait", "--json", *remote
    )
    run = json.loads(result.stdout)
    # Two steps allowed, the third refused: a policy failure, and exit code 1.
    assert result.exit_code == 1
    assert run["status"] == "failed_policy" and len(run["steps"]) == 2
    assert run["error"]["code"] == "budget_exceeded"


def test_submit_invalid_plan_is_a_clean_api_error(
    remote: list[str], tenant: TenantContext, tmp_path: Path
) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"steps": [{"step_id": "x", "skill": "nope"}]}))
    result = invoke("submit", str(tmp_path / "bad.json"), "--agent", tenant.agent.id, *remote)
    assert_clean_failure(result, "invalid_plan")


@pytest.mark.parametrize(
    ("content", "code"),
    [("steps: [unclosed", "bad_plan_file"), ("[1, 2]", "bad_plan_file"), ("{}", "bad_plan_file")],
)
def test_submit_bad_plan_file(tmp_path: Path, content: str, code: str) -> None:
    (tmp_path / "plan.yaml").write_text(content)
    result = invoke("submit", str(tmp_path / "plan.yaml"), "--agent", "agt_x", "--api-key", "k")
    assert_clean_failure(result, code)


def test_show_displays_the_output_of_the_run(
    remote: list[str], tenant: TenantContext, kernel: Kernel
) -> None:
    submitted = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN)
    run_id = submitted.run.id
    wait_until(
        lambda: kernel.runs.get(tenant.principal, run_id).status.value == "succeeded",
        timeout=30,
        what="the run to succeed",
    )
    output = kernel.runs.get(tenant.principal, run_id).output
    assert output and "answer" in output
    result = invoke("show", run_id, *remote)
    assert result.exit_code == 0, result.output
    # The run's output is keyed by output_key ("answer"), which no step preview shows.
    assert '"answer"' in result.stdout
    assert "hello governed world" in result.stdout
    shown = json.loads(invoke("show", run_id, "--json", *remote).stdout)
    assert shown["output"] == output
    assert shown["plan"]["steps"][0]["step_id"] == "ask"
