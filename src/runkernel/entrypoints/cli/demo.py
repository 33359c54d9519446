"""``runkernel demo``: the embedded kernel end to end in one command.

It starts the real thing in-process — the API (uvicorn on a free 127.0.0.1 port) and a
worker pool over a throwaway SQLite database — plus a local stand-in for the outside
world, submits a mix of runs over HTTP like any client, follows them in a live table and
checks that each reached the outcome the kernel promises. Exit 0 only if all did.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli import views
from runkernel.entrypoints.cli.client import ApiClient, JsonObject, is_final
from runkernel.entrypoints.cli.console import stdout
from runkernel.entrypoints.cli.demo_plans import Scenario, scenarios
from runkernel.entrypoints.cli.demo_receiver import LocalReceiver
from runkernel.entrypoints.serve import BackgroundServer
from runkernel.entrypoints.worker import WorkerPool

AGENT_BUDGET_USD = 1.0


@dataclass
class Tracked:
    scenario: Scenario
    run_id: str
    submitted_at: float
    run: JsonObject = field(default_factory=dict)
    governance: JsonObject = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return is_final(self.run)


def demo_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="database to use instead of a throwaway SQLite file (it is migrated)",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 4,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="give up after")] = 25.0,
) -> None:
    """Start the embedded kernel, submit a mix of runs and watch them finish."""
    # Deliberately no envvar on --database-url: a demo must not write into the database
    # RUNKERNEL_DATABASE_URL points at unless asked to.
    console = stdout
    with tempfile.TemporaryDirectory(prefix="runkernel-demo-") as tmp:
        ok = _run_demo(
            console,
            database_url or f"sqlite:///{tmp}/demo.db",
            concurrency=concurrency,
            timeout_s=timeout_s,
        )
    raise typer.Exit(0 if ok else 1)


def _run_demo(console: Console, database_url: str, *, concurrency: int, timeout_s: float) -> bool:
    secret = secrets.token_hex(16)
    receiver = LocalReceiver(secret).start()
    settings = opt.build_settings(
        database_url=database_url,
        worker_concurrency=concurrency,
        webhook_secret=secret,
        retry_backoff_s=0.1,  # the abort scenario retries once; keep the wait short
        # The stand-in for the outside world is on loopback, which the egress guard refuses;
        # open exactly its address and port, nothing else.
        egress_allow=receiver.authority,
    )
    server: BackgroundServer | None = None
    kernel = None
    try:
        kernel = build_kernel(settings)
        kernel.migrate()
        pool = WorkerPool(kernel)
        server = BackgroundServer(kernel, pool=pool).start()
        created = kernel.tenancy.create_tenant(f"demo-{secrets.token_hex(3)}")
        principal = kernel.tenancy.authenticate(created.api_key)
        agent = kernel.tenancy.create_agent(principal, "demo-agent", AGENT_BUDGET_USD)
        console.print(Rule("[bold]runkernel demo"))
        console.print(
            _intro(
                ("API", f"{server.url}  (uvicorn, in this process)"),
                ("workers", f"worker {pool.worker_id}, {pool.concurrency} slots"),
                ("database", escape(opt.display_url(database_url))),
                (
                    "tenant",
                    f"{created.tenant.id}, agent {agent.id} (budget ${AGENT_BUDGET_USD:.2f})",
                ),
                ("outside", f"{receiver.url}  (JSON API, outage, slow call, webhook receiver)"),
            ),
            "",
        )
        with ApiClient(server.url, created.api_key) as client:
            tracked = _submit_all(client, agent.id, scenarios(receiver.url))
            finished = _follow(console, client, tracked, timeout_s)
            if finished:
                _collect_governance(client, tracked)
    finally:
        if server is not None:
            server.stop(drain_timeout_s=2.0)
        receiver.stop()
        if kernel is not None:
            kernel.close()
    return _summarize(console, tracked, receiver, finished)


def _intro(*rows: tuple[str, str]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for row in rows:
        grid.add_row(*row)
    return grid


def _submit_all(client: ApiClient, agent_id: str, plans: list[Scenario]) -> list[Tracked]:
    tracked = []
    for scenario in plans:
        accepted = client.submit_run(
            {
                "agent_id": agent_id,
                "plan": scenario.plan,
                "budget": {"max_cost_usd": 0.05, "timeout_s": 20},
                "metadata": {"demo": scenario.title},
            }
        )
        item = Tracked(scenario, str(accepted["id"]), time.monotonic(), accepted)
        if scenario.cancel:
            item.run = client.cancel_run(item.run_id)
        tracked.append(item)
    return tracked


def _follow(console: Console, client: ApiClient, tracked: list[Tracked], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    with Live(_table(tracked), console=console, refresh_per_second=10) as live:
        while True:
            for item in tracked:
                if not item.final:
                    item.run = client.get_run(item.run_id)
            live.update(_table(tracked))
            if all(item.final for item in tracked):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _table(tracked: list[Tracked]) -> Table:
    table = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, leading=1)
    table.add_column("run", overflow="fold")  # fold, never cut: the id is for `runkernel show`
    for column in ("status", "phase", "steps", "cost", "latency"):
        table.add_column(column, no_wrap=True)
    for item in tracked:
        run = item.run
        steps = run.get("steps") or []
        failed = sum(1 for s in steps if s.get("status") == "failed")
        done = f"{len(steps)}/{len(item.scenario.plan['steps'])}"
        if failed:
            done += f" [red]({failed}✗)[/]"
        if item.final:
            latency = views.duration(views.latency_ms(run))
        else:  # not final yet: the time since submission, as this client sees it
            latency = f"[dim]{views.duration((time.monotonic() - item.submitted_at) * 1000)}[/]"
        table.add_row(
            Text.assemble(
                (item.scenario.title, "bold"),
                "\n",
                (item.scenario.skills, "dim"),
                "\n",
                (item.run_id, "cyan"),
            ),
            views.status_text(run.get("status")),
            str(run.get("phase", views.DASH)),
            done,
            views.usd(run.get("cost_usd")),
            latency,
        )
    return table


def _summarize(
    console: Console, tracked: list[Tracked], receiver: LocalReceiver, finished: bool
) -> bool:
    counts = Counter(str(item.run.get("status")) for item in tracked)
    parts = []
    for status, count in counts.most_common():
        text = f"{count} {status}"
        errors = {views.run_error(i.run) for i in tracked if i.run.get("status") == status}
        if status.startswith("failed") and errors - {None}:
            first = sorted(e for e in errors if e is not None)[0]
            text += f" ({first[0]}: {first[1]})"
        parts.append(text)
    deliveries = receiver.deliveries
    valid = [d for d in deliveries if d.signature_valid]
    if deliveries and len(valid) == len(deliveries):
        plural = "y" if len(deliveries) == 1 else "ies"
        hook = f"webhook received with valid signature ({len(deliveries)} deliver{plural})"
    else:
        hook = f"webhook: {len(valid)} of {len(deliveries)} deliveries had a valid signature"
    cost = sum(float(i.run.get("cost_usd") or 0) for i in tracked)
    console.print(f"\n{len(tracked)} runs: {escape(', '.join(parts))}; {hook}")
    console.print(f"total cost ${cost:.6f} (echo-1 is priced like any model)")
    governance_line, unclean = _governance_summary(tracked)
    console.print(governance_line)

    problems = [
        f"{i.run_id} ({i.scenario.title}): expected {i.scenario.expect}, got {i.run.get('status')}"
        for i in tracked
        if i.run.get("status") != i.scenario.expect
    ]
    if not finished:
        problems.insert(0, "not every run reached a final state in time")
    if not valid:
        problems.append("the webhook never arrived with a valid signature")
    problems += [f"{i.run_id}: audit not clean ({escape(reason)})" for i, reason in unclean]
    for problem in problems:
        console.print(f"[bold red]unexpected[/]: {escape(problem)}")
    if not problems:
        console.print("[green]every run reached the outcome the kernel promises.[/]")
    console.print(
        "\n[bold]Explore it yourself[/]\n"
        "  runkernel db upgrade                      [dim]# creates ./runkernel.db[/]\n"
        "  runkernel serve &                         [dim]# API + workers[/]\n"
        "  export RUNKERNEL_API_KEY=$(runkernel tenants create acme --json | jq -r .api_key)\n"
        "  runkernel agents create helper --budget-usd 5\n"
        '  curl -H "Authorization: Bearer $RUNKERNEL_API_KEY" '
        "http://127.0.0.1:8000/api/v1/runs\n"
        "  open http://127.0.0.1:8000/docs           [dim]# OpenAPI[/]"
    )
    return not problems


def _collect_governance(client: ApiClient, tracked: list[Tracked]) -> None:
    """What the kernel recorded for each run, read back over the API like a user would."""
    for item in tracked:
        item.governance = {
            "audit": client.get_audit(item.run_id).get("reconciliation") or {},
            "evaluation": client.get_evaluation(item.run_id).get("outcome"),
            "incidents": [i.get("category") for i in client.list_incidents(item.run_id)],
        }


def _governance_summary(tracked: list[Tracked]) -> tuple[str, list[tuple[Tracked, str]]]:
    """One line on the governance record of every run, and the runs whose audit is not
    clean (each with why)."""
    evaluations = Counter(str(i.governance.get("evaluation")) for i in tracked)
    incidents = Counter(c for i in tracked for c in i.governance.get("incidents") or [])
    unclean = []
    for item in tracked:
        audit = item.governance.get("audit") or {}
        if not audit.get("clean"):
            missing = ", ".join(audit.get("missing") or []) or str(audit.get("status"))
            unclean.append((item, f"missing {missing}"))
    evaluated = ", ".join(f"{n} {outcome}" for outcome, n in evaluations.most_common())
    raised = ", ".join(f"{n} {category}" for category, n in incidents.most_common()) or "none"
    clean = len(tracked) - len(unclean)
    line = (
        f"governance: policy evaluations {evaluated}; incidents {raised}; audit clean for "
        f"{clean} of {len(tracked)} runs (every expected action acked, in the same "
        "transaction as the final status)"
    )
    return escape(line), unclean
