"""Options shared by several commands, each bound to the ``RUNKERNEL_*`` variable of the
setting it overrides, and the one function that turns the given ones into Settings.

Every option defaults to ``None`` so that only flags (or variables) actually given become
overrides; everything else keeps the default documented in :mod:`runkernel.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from runkernel.config import Settings

DEFAULT_URL = "http://127.0.0.1:8000"

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="RUNKERNEL_DATABASE_URL",
        help="sqlite:///path.db or postgresql://user@host/db [default: sqlite:///./runkernel.db]",
        show_default=False,
    ),
]
Host = Annotated[
    str | None,
    typer.Option("--host", envvar="RUNKERNEL_HOST", help="address the API binds to"),
]
Port = Annotated[
    int | None,
    typer.Option("--port", envvar="RUNKERNEL_PORT", help="port the API listens on", min=0),
]
Concurrency = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        "-c",
        envvar="RUNKERNEL_WORKER_CONCURRENCY",
        help="runs executed at once",
        min=1,
    ),
]
LeaseS = Annotated[
    float | None,
    typer.Option("--lease-s", envvar="RUNKERNEL_LEASE_S", help="seconds a claim is held"),
]
PollIntervalS = Annotated[
    float | None,
    typer.Option(
        "--poll-interval-s",
        envvar="RUNKERNEL_POLL_INTERVAL_S",
        help="fallback poll when no wake-up arrives",
    ),
]
MaxAttempts = Annotated[
    int | None,
    typer.Option(
        "--max-attempts", envvar="RUNKERNEL_MAX_ATTEMPTS", help="claims of a run before it fails"
    ),
]
Migrate = Annotated[
    bool,
    typer.Option(
        "--migrate/--no-migrate",
        help="apply pending migrations first, creating the database if needed "
        "(instead of `runkernel db upgrade`)",
    ),
]
WorkerRelay = Annotated[
    bool | None,
    typer.Option(
        "--relay/--no-relay",
        envvar="RUNKERNEL_WORKER_RELAY",
        help="also run the outbox relay while this process holds its lease (default: on)",
        show_default=False,
    ),
]
WorkerSweep = Annotated[
    bool | None,
    typer.Option(
        "--sweep/--no-sweep",
        envvar="RUNKERNEL_WORKER_SWEEP",
        help="also run the audit sweep while this process holds its lease (default: on)",
        show_default=False,
    ),
]
RelayIntervalS = Annotated[
    float | None,
    typer.Option(
        "--interval-s",
        envvar="RUNKERNEL_RELAY_INTERVAL_S",
        help="fallback poll of the outbox [default: 1]",
        show_default=False,
    ),
]
LogLevel = Annotated[
    str,
    typer.Option("--log-level", envvar="RUNKERNEL_LOG_LEVEL", help="debug|info|warning|error"),
]

Url = Annotated[
    str,
    typer.Option("--url", envvar="RUNKERNEL_URL", help="base URL of a runkernel API"),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="RUNKERNEL_API_KEY",
        help="a tenant API key (from `runkernel tenants create`)",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def build_settings(**flags: Any) -> Settings:
    """Settings from the environment, overridden by the flags that were given (not None).

    Pydantic validates the overrides exactly as it validates the environment, so a bad
    flag fails with the same message as a bad variable."""
    overrides = {name: value for name, value in flags.items() if value is not None}
    return Settings(**overrides)


def display_url(database_url: str) -> str:
    """The database URL with its password masked and a SQLite file's path made absolute,
    for printing: the operator sees which file a relative default resolved to."""
    path = sqlite_file(database_url)
    try:
        url = make_url(database_url)
        if path is not None:
            url = url.set(database=str(path.resolve()))
        elif url.password is None:
            return database_url
        return url.render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # a malformed URL fails later, with a proper message
        return database_url


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):
        return None
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if url.query.get("uri") == "true":  # sqlite:///file:path?mode=...&uri=true
        if url.query.get("mode") == "memory":
            return None
        database = database.removeprefix("file:")
    return Path(database)
