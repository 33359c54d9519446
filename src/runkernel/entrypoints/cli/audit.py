"""Operator commands of the runtime audit contract, straight against the database:
``audit RUN_ID`` (one run's record and verdict), ``reconcile`` (one sweep now) and
``reconciler`` (the sweep loop on its own, so a run is flagged even when every worker
and every ``serve`` is dead).

``reconciler`` takes the sweep's process lease, the one workers and ``serve`` take: one
process sweeps at a time, the others stand by. ``reconcile`` is an operator's explicit
"now" (or a cron job) and takes none: two sweeps at once are safe, since storing a run's
result claims it, so the lease only spares the database redundant loops.

The sweep's ``audit.reconciliation.*`` events wait in the outbox for whichever process
holds the relay's lease (a worker, ``serve`` or ``runkernel relay``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runkernel.domain.audit import ActionKey, ReconciliationResult
from runkernel.entrypoints.background import BackgroundServices, new_holder_id
from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli.console import stdout
from runkernel.entrypoints.cli.server import open_kernel, setup_logging
from runkernel.entrypoints.cli.signals import run_until_signalled
from runkernel.entrypoints.cli.views import DASH
from runkernel.entrypoints.governance_services import GovernanceServices
from runkernel.services.audit import RunAudit

log = logging.getLogger(__name__)

STATUS_STYLES = {"COMPLETE": "green", "INCOMPLETE": "yellow", "STALE": "red"}
ACK_STYLES = {"SUCCESS": "green", "FAILED": "red", "ROLLED_BACK": "yellow"}
EXPECTATION_STYLES = {"ACKED": "green", "PENDING": "dim", "MISSING": "red", "FAILED": "red"}

IntervalS = Annotated[
    float | None,
    typer.Option(
        "--interval-s",
        envvar="RUNKERNEL_RECONCILE_INTERVAL_S",
        help="seconds between sweeps [default: 10]",
        show_default=False,
    ),
]
Limit = Annotated[int, typer.Option("--limit", min=1, help="runs reconciled at most")]


def audit(
    run_id: Annotated[str, typer.Argument(help="run id")],
    as_json: opt.Json = False,
    database_url: opt.DatabaseUrl = None,
) -> None:
    """Show a run's audit: expectations, acks, the verdict now and the stored result."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        record = GovernanceServices.of(kernel).audit.inspect(run_id)
    if as_json:
        print(json.dumps(audit_json(record), indent=2))
        return
    stdout.print(audit_view(record))


def reconcile(
    as_json: opt.Json = False,
    limit: Limit = 100,
    database_url: opt.DatabaseUrl = None,
    log_level: opt.LogLevel = "warning",
) -> None:
    """Reconcile every run past its deadline now (one sweep) and print the results."""
    setup_logging(log_level)  # the sweep logs each run it flags, on stderr
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        results = kernel.reconciler.sweep(limit=limit)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif not results:
        stdout.print("no run past its deadline is waiting for reconciliation")
    else:
        stdout.print(results_table(results))


def reconciler(
    database_url: opt.DatabaseUrl = None,
    interval_s: IntervalS = None,
    migrate: opt.Migrate = False,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run the audit sweep every interval until SIGTERM or Ctrl-C, while this process
    holds the sweep's lease (shared with the workers: one process sweeps at a time; run
    workers with --no-sweep to make this one the sweeper)."""
    setup_logging(log_level)
    settings = opt.build_settings(database_url=database_url, reconcile_interval_s=interval_s)
    with open_kernel(settings, migrate=migrate) as kernel:
        holder = f"reconciler:{new_holder_id()}"
        sweeper = BackgroundServices(kernel, relay=False, holder=holder)
        run_until_signalled(
            sweeper.start,
            sweeper.stop,
            started=f"reconciler started: a sweep every {settings.reconcile_interval_s:g} s "
            f"while {holder} holds the lease",
            stopping="stopping the sweep",
        )
    print(
        f"reconciler stopped: {sweeper.sweeps} sweeps, {sweeper.reconciled} runs reconciled",
        flush=True,
    )


# -- rendering ------------------------------------------------------------------------
def audit_json(record: RunAudit) -> dict[str, Any]:
    run = record.run
    return {
        "run_id": record.run_id,
        "run": None
        if run is None
        else {
            "tenant_id": run.tenant_id,
            "status": run.status.value,
            "phase": run.phase.value,
        },
        "expectations": [e.to_dict() for e in record.expectations],
        "acks": [a.to_dict() for a in record.acks],
        "reconciliation": record.live.to_dict() if record.live else None,
        "stored": record.stored.to_dict() if record.stored else None,
    }


def audit_view(record: RunAudit) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", record.run_id)
    if record.run is None:
        head.add_row("run record", Text("not found (audit records only)", style="yellow"))
    else:
        head.add_row("tenant", record.run.tenant_id)
        head.add_row("status", f"{record.run.status.value} ({record.run.phase.value})")
    head.add_row("verdict now", verdict(record.live))
    head.add_row("stored result", verdict(record.stored))
    return Group(head, expectations_table(record), acks_table(record))


def verdict(result: ReconciliationResult | None) -> Text:
    if result is None:
        return Text(DASH)
    text = Text(result.status.value, style=STATUS_STYLES.get(result.status.value, ""))
    for label, keys in (
        ("missing", result.missing_actions),
        ("drift", result.drift_actions),
        ("failed", result.failed_actions),
        ("invalid", result.invalid),
    ):
        if keys:
            text.append(f"  {label}: {actions(keys)}")
    return text


def expectations_table(record: RunAudit) -> Table:
    table = Table(title="expectations", title_justify="left")
    for column in ("domain/action", "status", "deadline", "acked at"):
        table.add_column(column, no_wrap=True)
    for e in record.expectations:
        table.add_row(
            f"{e.domain}/{e.action}",
            Text(e.status.value, style=EXPECTATION_STYLES.get(e.status.value, "")),
            _at(e.deadline_ms),
            _at(e.acked_at_ms),
        )
    return table


def acks_table(record: RunAudit) -> Table:
    table = Table(title="acks", title_justify="left")
    for column in ("domain/action", "status", "at", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("error / rollback", overflow="fold", ratio=1)
    for a in record.acks:
        table.add_row(
            f"{a.domain}/{a.action}",
            Text(a.status.value, style=ACK_STYLES.get(a.status.value, "")),
            _at(a.created_at_ms),
            a.result_id or DASH,
            escape(a.error or a.rollback_reason or ""),
        )
    return table


def results_table(results: Sequence[ReconciliationResult]) -> Table:
    table = Table(title=f"reconciled ({len(results)})", title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("missing", "drift", "failed"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            r.run_id,
            Text(r.status.value, style=STATUS_STYLES.get(r.status.value, "")),
            actions(r.missing_actions) or DASH,
            actions(r.drift_actions) or DASH,
            actions(r.failed_actions) or DASH,
        )
    return table


def actions(keys: Sequence[ActionKey]) -> str:
    return ", ".join(f"{domain}/{action}" for domain, action in keys)


def _at(ms: int | None) -> str:
    if ms is None:
        return DASH
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
