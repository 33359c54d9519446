"""`runkernel runs reject` and `runkernel agents update` over real HTTP, on both databases:
POST /api/v1/runs/{id}/reject {"note"} → 200 with the run's detail (409 when it is not
paused), and PATCH /api/v1/agents/{id} with only the given fields → 200 with the agent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from conftest import ECHO_PLAN, TenantContext, make_tenant
from runkernel.bootstrap import Kernel
from runkernel.domain.pauses import PauseReason, TimeoutBehaviour
from runkernel.domain.records import Claim, Role
from runkernel.entrypoints.cli import app
from runkernel.entrypoints.serve import BackgroundServer
from support.workers import run_row

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"RUNKERNEL_URL": None, "RUNKERNEL_API_KEY": None})


def assert_clean_failure(result: Result, code: str | None = None) -> None:
    assert result.exit_code == 1, result.output
    assert "error: " in result.stderr, result.stderr
    # Refused by the route itself, not because there is no such route.
    assert "no route" not in result.stderr and "method_not_allowed" not in result.stderr
    if code is not None:
        assert f"error: {code}:" in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def url(kernel: Kernel) -> Iterator[str]:
    """The API without workers: nothing claims what a test sets up by hand."""
    with BackgroundServer(kernel) as server:
        yield server.url


def _paused(kernel: Kernel, tenant: TenantContext) -> str:
    """A run claimed, one step boundary reached, paused awaiting an admin's approval."""
    run = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN).run
    with kernel.uow() as uow:
        (claimed,) = uow.runs.claim("worker-A", 10, kernel.clock.now_ms(), 5_000)
        uow.commit()
    kernel.pauses.pause_at_boundary(
        claimed,
        Claim.of(claimed, "worker-A"),
        PauseReason.APPROVAL_REQUIRED,
        message="webhook.send needs approval",
        on_timeout=TimeoutBehaviour.TERMINATE,
    )
    return run.id


# -- runs reject ----------------------------------------------------------------------
def test_reject_ends_a_paused_run_failed_policy(
    kernel: Kernel, tenant: TenantContext, url: str
) -> None:
    run_id = _paused(kernel, tenant)
    remote = ["--url", url, "--api-key", tenant.api_key]
    result = invoke("runs", "reject", run_id, "--note", "not this URL", "--json", *remote)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert (run["id"], run["status"], run["phase"]) == (run_id, "failed_policy", "FAILED")
    assert run_row(kernel, run_id).status == "failed_policy"


def test_reject_prints_one_line_without_json(
    kernel: Kernel, tenant: TenantContext, url: str
) -> None:
    run_id = _paused(kernel, tenant)
    result = invoke("runs", "reject", run_id, "--url", url, "--api-key", tenant.api_key)
    assert result.exit_code == 0, result.output
    assert f"run {run_id} is failed_policy" in result.stdout


def test_reject_of_a_run_that_is_not_paused_is_refused(
    kernel: Kernel, tenant: TenantContext, url: str
) -> None:
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN).run.id
    result = invoke("runs", "reject", run_id, "--url", url, "--api-key", tenant.api_key)
    assert_clean_failure(result)
    assert run_row(kernel, run_id).status == "queued"


# -- agents update --------------------------------------------------------------------
def test_agents_update_changes_only_the_given_fields(
    kernel: Kernel, tenant: TenantContext, url: str
) -> None:
    remote = ["--url", url, "--api-key", tenant.api_key]
    agent_id = tenant.agent.id
    result = invoke(
        "agents",
        "update",
        agent_id,
        "--budget-usd",
        "5",
        "--on-budget",
        "pause",
        "--max-concurrent-runs",
        "3",
        "--json",
        *remote,
    )
    assert result.exit_code == 0, result.output
    agent = json.loads(result.stdout)
    assert (agent["id"], agent["budget_usd"], agent["on_budget"], agent["max_concurrent_runs"]) == (
        agent_id,
        5.0,
        "pause",
        3,
    )

    only_budget = invoke("agents", "update", agent_id, "--budget-usd", "7.5", "--json", *remote)
    assert only_budget.exit_code == 0, only_budget.output
    agent = json.loads(only_budget.stdout)
    assert (agent["budget_usd"], agent["on_budget"], agent["max_concurrent_runs"]) == (
        7.5,
        "pause",
        3,
    )

    line = invoke("agents", "update", agent_id, "--on-budget", "cap", *remote)
    assert line.exit_code == 0, line.output
    assert f"agent {agent_id} updated: on_budget cap" in line.stdout


def test_agents_update_is_refused_for_a_user_key_and_an_unknown_agent(
    kernel: Kernel, tenant: TenantContext, url: str
) -> None:
    user_key = kernel.tenancy.create_key(tenant.principal, Role.USER).api_key
    as_user = invoke(
        "agents",
        "update",
        tenant.agent.id,
        "--budget-usd",
        "1",
        "--url",
        url,
        "--api-key",
        user_key,
    )
    assert_clean_failure(as_user, "permission_denied")
    other = make_tenant(kernel)
    theirs = invoke(
        "agents",
        "update",
        other.agent.id,
        "--budget-usd",
        "1",
        "--url",
        url,
        "--api-key",
        tenant.api_key,
    )
    assert_clean_failure(theirs, "not_found")  # another tenant's agent does not exist here


def test_agents_update_with_nothing_to_change_asks_for_an_option(tenant: TenantContext) -> None:
    result = invoke("agents", "update", tenant.agent.id, "--api-key", tenant.api_key)
    assert_clean_failure(result, "nothing_to_update")
