"""Commands that run the kernel or talk to its database directly: ``serve``, ``api``,
``worker``, ``db`` and ``tenants`` (``keys`` is :mod:`runkernel.entrypoints.cli.keys`).

Schema rule: on the embedded SQLite default every one of them migrates first (one machine,
one file: nothing to coordinate); on PostgreSQL only ``db upgrade`` or ``--migrate`` does,
because many processes on many machines must not race to change a shared schema.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.panel import Panel

from runkernel.adapters.db import migrate as migrations
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.config import Settings
from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli.console import stdout
from runkernel.entrypoints.cli.errors import CliError
from runkernel.entrypoints.cli.signals import run_until_signalled
from runkernel.entrypoints.serve import serve_forever
from runkernel.entrypoints.worker import WorkerPool

log = logging.getLogger(__name__)

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants (direct database access, for operators).")


@contextmanager
def open_kernel(settings: Settings, *, migrate: bool = False) -> Iterator[Kernel]:
    kernel = build_kernel(settings)
    try:
        prepare_schema(kernel, migrate=migrate)
        yield kernel
    finally:
        kernel.close()


def prepare_schema(kernel: Kernel, *, migrate: bool) -> None:
    if kernel.db.is_sqlite or migrate:
        kernel.migrate()
        return
    current, head = migrations.current_revision(kernel.db), migrations.head_revision()
    if current != head:
        raise CliError(
            f"the database schema is at {current or 'nothing'}, this runkernel needs {head}: "
            "run `runkernel db upgrade` or pass --migrate",
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
    """Run the API and a worker pool in one process (the embedded default).

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
    with open_kernel(settings, migrate=migrate) as kernel:
        pool = WorkerPool(kernel)
        stdout.print(
            f"runkernel serving http://{settings.host}:{settings.port} "
            f"(docs at /docs) with worker {pool.worker_id} ({pool.concurrency} slots) "
            f"on {opt.display_url(settings.database_url)}"
        )
        serve_forever(
            kernel, host=settings.host, port=settings.port, pool=pool, log_level=log_level
        )


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
    with open_kernel(settings, migrate=migrate) as kernel:
        stdout.print(
            f"runkernel API on http://{settings.host}:{settings.port} "
            f"on {opt.display_url(settings.database_url)}"
        )
        serve_forever(kernel, host=settings.host, port=settings.port, log_level=log_level)


def worker(
    database_url: opt.DatabaseUrl = None,
    concurrency: opt.Concurrency = None,
    lease_s: opt.LeaseS = None,
    poll_interval_s: opt.PollIntervalS = None,
    max_attempts: opt.MaxAttempts = None,
    migrate: opt.Migrate = False,
    log_level: opt.LogLevel = "info",
) -> None:
    """Run only a worker pool; SIGTERM or Ctrl-C drains it.

    In-flight runs get the drain time to finish, then are released for another worker."""
    setup_logging(log_level)
    settings = opt.build_settings(
        database_url=database_url,
        worker_concurrency=concurrency,
        lease_s=lease_s,
        poll_interval_s=poll_interval_s,
        max_attempts=max_attempts,
    )
    with open_kernel(settings, migrate=migrate) as kernel:
        pool = WorkerPool(kernel)
        run_until_signalled(
            pool.start,
            pool.stop,
            started=f"worker {pool.worker_id} started: {pool.concurrency} slots",
            stopping="draining",
        )
        print(
            f"worker {pool.worker_id} stopped: claimed {pool.claimed}, finished {pool.finished}",
            flush=True,
        )


# -- schema ---------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(database_url: opt.DatabaseUrl = None) -> None:
    """Apply all pending migrations (safe to run again)."""
    settings = opt.build_settings(database_url=database_url)
    with open_kernel(settings, migrate=True) as kernel:
        current = migrations.current_revision(kernel.db)
    stdout.print(
        f"database {opt.display_url(settings.database_url)} is at revision {current} (head)"
    )


@db_app.command("current")
def db_current(database_url: opt.DatabaseUrl = None) -> None:
    """Show the schema revision of the database and the one this runkernel needs."""
    settings = opt.build_settings(database_url=database_url)
    kernel = build_kernel(settings)
    try:
        current, head = migrations.current_revision(kernel.db), migrations.head_revision()
    finally:
        kernel.close()
    state = "up to date" if current == head else f"behind: run `runkernel db upgrade` to {head}"
    stdout.print(f"revision {current or 'none'} ({state})")


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
