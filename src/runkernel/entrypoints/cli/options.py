"""Options shared by several commands, each bound to the ``RUNKERNEL_*`` variable of the
setting it overrides, and the one function that turns the given ones into Settings.

Every option defaults to ``None`` so that only flags (or variables) actually given become
overrides; everything else keeps the default documented in :mod:`runkernel.config`.
"""

from __future__ import annotations

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
        help="apply pending migrations first (always done on SQLite)",
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
    """The database URL with its password masked, for printing."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # a malformed URL fails later, with a proper message
        return database_url
