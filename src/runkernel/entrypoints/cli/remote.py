"""Tenant-facing commands: they talk HTTP to a runkernel API with a tenant's key, exactly
like any other client would, so they work the same against a local or a remote server."""

from __future__ import annotations

import json
from enum import StrEnum
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


runs_app = typer.Typer(
    help="Your runs (over HTTP): `runkernel runs` lists them; the commands act on one."
)
RunId = Annotated[str, typer.Argument(help="run id")]
Note = Annotated[str | None, typer.Option("--note", help="why; kept with the decision")]


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="queued, succeeded, …")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="agent id")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next page")] = None,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """List your runs, newest first; or cancel, pause, resume or reject one."""
    if ctx.invoked_subcommand is not None:
        return
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


@runs_app.command("cancel")
def runs_cancel(
    run_id: RunId,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Cancel a run: a queued one at once, a running one before its next step."""
    with _client(url, api_key) as client:
        run = client.cancel_run(run_id)
    _print_run(run, as_json, "cancel requested: it stops before its next step")


@runs_app.command("pause")
def runs_pause(
    run_id: RunId,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Pause a running run at its next step boundary; its worker slot is freed."""
    with _client(url, api_key) as client:
        run = client.pause_run(run_id)
    _print_run(run, as_json, "pause requested: it pauses at its next step boundary")


@runs_app.command("resume")
def runs_resume(
    run_id: RunId,
    note: Note = None,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Resume (or approve) a paused run: it continues after its last step on any worker."""
    with _client(url, api_key) as client:
        run = client.resume_run(run_id, note)
    _print_run(run, as_json)


@runs_app.command("reject")
def runs_reject(
    run_id: RunId,
    note: Note = None,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Reject a paused run (an approval it waits for, say): it ends failed_policy."""
    with _client(url, api_key) as client:
        run = client.reject_run(run_id, note)
    _print_run(run, as_json)


def _print_run(run: JsonObject, as_json: bool, requested: str | None = None) -> None:
    """The run as the API answered it, or one line: its status, and what is still to come
    (a stop or pause the worker has yet to reach, a resumed run waiting for a worker)."""
    if as_json:
        _print_json(run)
        return
    line = f"run [bold]{run.get('id')}[/] is {views.status_text(run.get('status')).markup}"
    pending = run.get("cancel_requested") or run.get("pause_requested")
    if requested is not None and pending and run.get("status") == "running":
        line += f"; {requested}"
    elif run.get("waiting_for_worker"):
        line += "; resumed, waiting for a worker"
    stdout.print(line)


class OnBudget(StrEnum):
    """What a step that the agent's budget cannot pay for does (the API decides the rest)."""

    TERMINATE = "terminate"
    PAUSE = "pause"
    CAP = "cap"


@agents_app.command("update")
def agents_update(
    agent_id: Annotated[str, typer.Argument(help="agent id")],
    budget_usd: Annotated[
        float | None, typer.Option("--budget-usd", help="spending budget, USD")
    ] = None,
    on_budget: Annotated[
        OnBudget | None,
        typer.Option(
            "--on-budget", help="when a step does not fit the budget", case_sensitive=False
        ),
    ] = None,
    max_concurrent_runs: Annotated[
        int | None, typer.Option("--max-concurrent-runs", help="runs of the agent at once")
    ] = None,
    as_json: opt.Json = False,
    url: opt.Url = opt.DEFAULT_URL,
    api_key: opt.ApiKey = None,
) -> None:
    """Change an agent's budget, on_budget or concurrency cap (only the options given)."""
    changes: JsonObject = {
        "budget_usd": budget_usd,
        "on_budget": None if on_budget is None else on_budget.value,
        "max_concurrent_runs": max_concurrent_runs,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise CliError(
            "nothing to change: give --budget-usd, --on-budget or --max-concurrent-runs",
            code="nothing_to_update",
        )
    with _client(url, api_key) as client:
        agent = client.update_agent(agent_id, changes)
    if as_json:
        _print_json(agent)
        return
    shown = ", ".join(
        f"{name} {views.usd(agent.get(name)) if name == 'budget_usd' else agent.get(name)}"
        for name in changes
    )
    stdout.print(f"agent [bold]{agent.get('id')}[/] updated: {shown}")
