"""Commands that run the kernel or talk to its database directly: ``serve``, ``api``,
``worker``, ``relay``, ``db`` and ``tenants`` (create, suspend, reactivate; ``keys`` is
:mod:`runkernel.entrypoints.cli.keys`).

Which database: every command names the one it uses (on stderr, so ``--json`` output
stays pure) and none creates one implicitly — an operator command run in the wrong
directory must fail, not quietly make a fresh ``./runkernel.db`` and print a key the
running server does not know. Schema rule: only ``db upgrade``, ``--migrate`` and
``serve`` on the embedded SQLite default (one process owning its file) create or migrate
a database; every other command needs an existing one at the current schema and says to
run ``runkernel db upgrade`` otherwise. On PostgreSQL many processes on many machines must
not race to change a shared schema, so even ``serve`` migrates only when asked.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.panel import Panel

from runkernel.adapters.db import migrate as migrations
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.config import Settings
from runkernel.domain.records import Principal, TenantStatus
from runkernel.entrypoints.api.routes_tenants import tenant_out
from runkernel.entrypoints.background import BackgroundServices
from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli.console import stderr, stdout
from runkernel.entrypoints.cli.errors import CliError
from runkernel.entrypoints.cli.signals import run_until_signalled
from runkernel.entrypoints.relay import new_relay_id
from runkernel.entrypoints.serve import bind_socket, serve_forever
from runkernel.entrypoints.worker import WorkerPool

log = logging.getLogger(__name__)

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants (direct database access, for operators).")

UPGRADE_HINT = "run `runkernel db upgrade` (it creates the database)"


@contextmanager
def open_kernel(settings: Settings, *, migrate: bool = False) -> Iterator[Kernel]:
    """The kernel on the database of ``settings``, named on stderr.

    ``migrate`` brings the schema to head first, creating a SQLite file that does not
    exist. Without it the database must exist at the current schema: a missing SQLite
    file or an absent or older schema is a CliError telling to run ``db upgrade``."""
    where = opt.display_url(settings.database_url)
    file = opt.sqlite_file(settings.database_url)
    missing = file is not None and not file.exists()
    if missing and not migrate:
        raise CliError(
            f"no database at {where}: {UPGRADE_HINT}, or point --database-url / "
            "RUNKERNEL_DATABASE_URL at the server's database",
            code="database_missing",
        )
    stderr.print(
        f"{'creating' if missing else 'using'} database {where}", markup=False, soft_wrap=True
    )
    kernel = build_kernel(settings)
    try:
        prepare_schema(kernel, migrate=migrate)
        yield kernel
    finally:
        kernel.close()


def prepare_schema(kernel: Kernel, *, migrate: bool) -> None:
    if migrate:
        kernel.migrate()
        return
    current, head = migrations.current_revision(kernel.db), migrations.head_revision()
    if current != head:
        raise CliError(
            f"the database schema is at {current or 'nothing'}, this runkernel needs {head}: "
            + UPGRADE_HINT,
            code="schema_not_current",
        )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


# -- long-running processes -----------------------------------------------------------
def serve(
    database_url: opt.DatabaseUrl = None,
    host: opt.Host = None,
    port: opt.Port = None,
    concurrency: opt.Concurrency = None,
    lease_s: opt.LeaseS = None,
    poll_interval_s: opt.PollIntervalS = None,
    max_attempts: opt.MaxAttempts = None,
    migrate: opt.Migrate = False,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run the API, a worker pool, the outbox relay and the audit sweep in one process
    (the embedded default; on SQLite it creates and migrates its database file).

    SIGTERM or Ctrl-C stops the API first, then drains the workers."""
    setup_logging(log_level)
    settings = opt.build_settings(
        database_url=database_url,
        host=host,
        port=port,
        worker_concurrency=concurrency,
        lease_s=lease_s,
        poll_interval_s=poll_interval_s,
        max_attempts=max_attempts,
    )
    # Bound before anything starts: a taken port must fail before a worker claims a run.
    sock = bind_socket(settings.host, settings.port)
    try:
        with open_kernel(settings, migrate=migrate or settings.is_sqlite) as kernel:
            pool = WorkerPool(kernel)
            stdout.print(
                f"runkernel serving {_listening(sock)} (docs at /docs) with worker "
                f"{pool.worker_id} ({pool.concurrency} slots) "
                f"on {opt.display_url(settings.database_url)}",
                soft_wrap=True,
            )
            serve_forever(kernel, sock, pool=pool, log_level=log_level)
    finally:
        sock.close()


def api(
    database_url: opt.DatabaseUrl = None,
    host: opt.Host = None,
    port: opt.Port = None,
    migrate: opt.Migrate = False,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run only the HTTP API; runs wait for `runkernel worker` processes."""
    setup_logging(log_level)
    settings = opt.build_settings(database_url=database_url, host=host, port=port)
    sock = bind_socket(settings.host, settings.port)
    try:
        with open_kernel(settings, migrate=migrate) as kernel:
            stdout.print(
                f"runkernel API on {_listening(sock)} on {opt.display_url(settings.database_url)}",
                soft_wrap=True,
            )
            serve_forever(kernel, sock, log_level=log_level)
    finally:
        sock.close()


def worker(
    database_url: opt.DatabaseUrl = None,
    concurrency: opt.Concurrency = None,
    lease_s: opt.LeaseS = None,
    poll_interval_s: opt.PollIntervalS = None,
    max_attempts: opt.MaxAttempts = None,
    relay: opt.WorkerRelay = None,
    sweep: opt.WorkerSweep = None,
    migrate: opt.Migrate = False,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run a worker pool; SIGTERM or Ctrl-C drains it.

    In-flight runs get the drain time to finish, then are released for another worker.
    Unless told not to, the worker also runs the outbox relay and the audit sweep while it
    holds their lease: one process at a time does each, the others stand by."""
    setup_logging(log_level)
    settings = opt.build_settings(
        database_url=database_url,
        worker_concurrency=concurrency,
        lease_s=lease_s,
        poll_interval_s=poll_interval_s,
        max_attempts=max_attempts,
        worker_relay=relay,
        worker_sweep=sweep,
    )
    with open_kernel(settings, migrate=migrate) as kernel:
        pool = WorkerPool(kernel)
        background = BackgroundServices(
            kernel,
            relay=settings.worker_relay,
            reconciler=settings.worker_sweep,
            holder=pool.worker_id,
        )

        def start() -> None:
            pool.start()
            background.start()

        def stop() -> None:
            pool.stop()  # first: a draining run still writes events for the relay
            background.stop()

        run_until_signalled(
            start,
            stop,
            started=f"worker {pool.worker_id} started: {pool.concurrency} slots; "
            f"leased jobs: {', '.join(background.names) or 'none'}",
            stopping="draining",
        )
        print(
            f"worker {pool.worker_id} stopped: claimed {pool.claimed}, finished {pool.finished}",
            flush=True,
        )


def relay(
    database_url: opt.DatabaseUrl = None,
    interval_s: opt.RelayIntervalS = None,
    migrate: opt.Migrate = False,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run the outbox relay (and, with a non-SQL audit store, the ack forwarder) until
    SIGTERM or Ctrl-C.

    It takes the same lease as the workers' relay: one process at a time relays, so a
    dedicated relay stands by while a worker holds it (run workers with --no-relay to
    make this one the relay)."""
    setup_logging(log_level)
    settings = opt.build_settings(database_url=database_url, relay_interval_s=interval_s)
    with open_kernel(settings, migrate=migrate) as kernel:
        background = BackgroundServices(kernel, reconciler=False, holder=new_relay_id())
        run_until_signalled(
            background.start,
            background.stop,
            started=f"relay started: {', '.join(background.names)} "
            f"while {background.holder} holds the lease",
            stopping="stopping the relay",
        )
    print(f"relay stopped: {background.published} events published", flush=True)


def _listening(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


# -- schema ---------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(database_url: opt.DatabaseUrl = None) -> None:
    """Apply all pending migrations (safe to run again)."""
    settings = opt.build_settings(database_url=database_url)
    with open_kernel(settings, migrate=True) as kernel:
        current = migrations.current_revision(kernel.db)
    stdout.print(
        f"database {opt.display_url(settings.database_url)} is at revision {current} (head)",
        soft_wrap=True,
    )


@db_app.command("current")
def db_current(database_url: opt.DatabaseUrl = None) -> None:
    """Show the schema revision of the database and the one this runkernel needs."""
    settings = opt.build_settings(database_url=database_url)
    where = opt.display_url(settings.database_url)
    file = opt.sqlite_file(settings.database_url)
    if file is not None and not file.exists():  # connecting would create it
        raise CliError(f"no database at {where}: {UPGRADE_HINT}", code="database_missing")
    kernel = build_kernel(settings)
    try:
        current, head = migrations.current_revision(kernel.db), migrations.head_revision()
    finally:
        kernel.close()
    state = "up to date" if current == head else f"behind: run `runkernel db upgrade` to {head}"
    stdout.print(f"database {where}: revision {current or 'none'} ({state})", soft_wrap=True)


# -- tenants ------------------------------------------------------------------------
@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="unique tenant name")],
    as_json: opt.Json = False,
    database_url: opt.DatabaseUrl = None,
) -> None:
    """Create a tenant and its first admin API key (shown only once)."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        created = kernel.tenancy.create_tenant(name)
    if as_json:
        print(json.dumps({"tenant_id": created.tenant.id, "api_key": created.api_key}))
        return
    stdout.print(
        Panel.fit(
            f"tenant  [bold]{created.tenant.id}[/] ({created.tenant.name})\n"
            f"api key [bold green]{created.api_key}[/] (admin)\n\n"
            "[dim]The key is shown only once; runkernel keeps only its hash.[/]\n"
            f"[dim]export RUNKERNEL_API_KEY={created.api_key}[/]",
            title="tenant created",
        )
    )


TenantId = Annotated[str, typer.Argument(help="tenant id (ten_…)")]
# The CLI acts with direct database access, not with a key: this names it as the actor.
CLI_OPERATOR = Principal.operator("cli")


@tenants_app.command("suspend")
def tenants_suspend(
    tenant_id: TenantId, as_json: opt.Json = False, database_url: opt.DatabaseUrl = None
) -> None:
    """Suspend a tenant: its keys may only read and cancel, its queued runs wait, its
    running runs stop at their next check (as POST /api/v1/tenants/ID/suspend)."""
    _set_status(tenant_id, TenantStatus.SUSPENDED, as_json, database_url)


@tenants_app.command("reactivate")
def tenants_reactivate(
    tenant_id: TenantId, as_json: opt.Json = False, database_url: opt.DatabaseUrl = None
) -> None:
    """Reactivate a suspended tenant: its keys act again and its queued runs start."""
    _set_status(tenant_id, TenantStatus.ACTIVE, as_json, database_url)


@tenants_app.command("limits")
def tenants_limits(
    tenant_id: TenantId,
    monthly_cost_usd: Annotated[
        float | None,
        typer.Option(help="what the tenant's runs may cost per UTC month", min=0),
    ] = None,
    no_cap: Annotated[bool, typer.Option("--no-cap", help="lift the monthly cap")] = False,
    as_json: opt.Json = False,
    database_url: opt.DatabaseUrl = None,
) -> None:
    """Set (--monthly-cost-usd) or lift (--no-cap) a tenant's monthly cost cap, as PUT
    /api/v1/tenants/ID/limits; with neither, show it and this month's spend."""
    if no_cap and monthly_cost_usd is not None:
        raise CliError("give --monthly-cost-usd or --no-cap, not both", code="invalid_option")
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        if no_cap or monthly_cost_usd is not None:
            tenant = kernel.tenancy.set_limits(CLI_OPERATOR, tenant_id, monthly_cost_usd)
        else:
            tenant = kernel.tenancy.get_tenant(CLI_OPERATOR, tenant_id)
        shown = tenant_out(tenant, kernel.tenancy.month_spend(CLI_OPERATOR, tenant.id))
    if as_json:
        print(shown.model_dump_json())
        return
    cap = "no cap" if shown.monthly_cost_usd is None else f"${shown.monthly_cost_usd:g}"
    stdout.print(
        f"tenant {shown.id} ({shown.name}): monthly cap {cap}; {shown.month} spent "
        f"${shown.month_spent_usd:g}, reserved ${shown.month_reserved_usd:g}",
        soft_wrap=True,
    )


def _set_status(
    tenant_id: str, status: TenantStatus, as_json: bool, database_url: str | None
) -> None:
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        tenant = kernel.tenancy.set_status(CLI_OPERATOR, tenant_id, status)
        month = kernel.tenancy.month_spend(CLI_OPERATOR, tenant.id)
    if as_json:
        print(tenant_out(tenant, month).model_dump_json())
        return
    stdout.print(f"tenant {tenant.id} ({tenant.name}) is {tenant.status.value}", soft_wrap=True)
