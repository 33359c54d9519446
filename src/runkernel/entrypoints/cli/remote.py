"""Tenant-facing commands: they talk HTTP to a runkernel API with a tenant's key, exactly
like any other client would, so they work the same against a local or a remote server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli import plans, views
from runkernel.entrypoints.cli.client import ApiClient, JsonObject
from runkernel.entrypoints.cli.console import stdout
from runkernel.entrypoints.cli.errors import CliError

agents_app = typer.Typer(help="Agents of your tenant (over HTTP).", no_args_is_help=True)


def _client(url: str, api_key: str | None) -> ApiClient:
    if not api_key:
        raise CliError(
            "no API key: pass --api-key or set RUNKERNEL_API_KEY "
            "(create one with `runkernel tenants create NAME`)",
            code="no_api_key",
        )
    return ApiClient(url, api_key)


def _print_json(value: Any) -> None:
    # Plain print, not rich: the output must stay machine-readable (no wrapping, no color).
    print(json.dumps(value, indent=2, default=str))


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Argument(help="agent name, unique in your tenant")],
    budget_usd: Annotated[float, typer.Option("--budget-usd", help="spending budget, USD")],
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Create an agent with a spending budget across all its runs."""
    with _client(url, api_key) as client:
        agent = client.create_agent(name, budget_usd)
    if as_json:
        _print_json(agent)
    else:
        stdout.print(f"agent [bold]{agent.get('id')}[/] created")


@agents_app.command("list")
def agents_list(
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """List your tenant's agents."""
    with _client(url, api_key) as client:
        agents = client.list_agents()
    if as_json:
        _print_json(agents)
    else:
        stdout.print(views.agents_table(agents))


def submit(
    plan_file: Annotated[
        Path, typer.Argument(help="plan.yaml / plan.json: a plan or a whole submission")
    ],
    agent: Annotated[str | None, typer.Option("--agent", help="agent id")] = None,
    budget_usd: Annotated[
        float | None, typer.Option("--budget-usd", help="run budget: max cost, USD")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="run budget")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="run budget")] = None,
    timeout_s: Annotated[float | None, typer.Option("--timeout-s", help="run budget")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="the same key returns the same run")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the run; exit 0 only if it succeeds")
    ] = False,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Submit a run. With --wait, show its steps until it is final."""
    submission = plans.build_submission(
        plans.read_document(plan_file),
        agent_id=agent,
        budget={
            "max_cost_usd": budget_usd,
            "max_tokens": max_tokens,
            "max_steps": max_steps,
            "timeout_s": timeout_s,
        },
        idempotency_key=idempotency_key,
    )
    with _client(url, api_key) as client:
        accepted = client.submit_run(submission)
        run_id = str(accepted.get("id"))
        if not wait:
            if as_json:
                _print_json(accepted)
            else:
                stdout.print(f"run [bold]{run_id}[/] accepted: {accepted.get('status')}")
            return
        run = _follow(client, run_id, plans.step_count(submission), quiet=as_json)
    if as_json:
        _print_json(run)
    else:
        stdout.print(views.run_detail(run))
    raise typer.Exit(0 if run.get("status") == "succeeded" else 1)


def _follow(client: ApiClient, run_id: str, total: int, *, quiet: bool) -> JsonObject:
    """Poll until the run is final, with a progress bar over its steps."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=stdout,
        disable=quiet,
        transient=False,
    )
    with progress:
        task = progress.add_task(run_id, total=total or None, status="queued")

        def update(run: JsonObject) -> None:
            progress.update(
                task,
                completed=views.steps_done(run),
                status=views.status_text(run.get("status")).markup,
            )

        return client.wait(run_id, on_update=update)


def runs(
    status: Annotated[str | None, typer.Option("--status", help="queued, succeeded, …")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="agent id")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next page")] = None,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """List your runs, newest first."""
    with _client(url, api_key) as client:
        page, next_cursor = client.list_runs(
            status=status, agent_id=agent, limit=limit, cursor=cursor
        )
    if as_json:
        _print_json({"runs": page, "next_cursor": next_cursor})
        return
    stdout.print(views.runs_table(page))
    if next_cursor:
        stdout.print(f"[dim]more: runkernel runs --cursor {next_cursor}[/]")


def show(
    run_id: Annotated[str, typer.Argument(help="run id")],
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Show one run: status, cost, its steps, its transitions and its output."""
    with _client(url, api_key) as client:
        run = client.get_run(run_id)
    if as_json:
        _print_json(run)
    else:
        stdout.print(views.run_detail(run))
