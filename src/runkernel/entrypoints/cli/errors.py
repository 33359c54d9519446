"""How the CLI fails: one red line on stderr and exit code 1, never a traceback.

CliError                  base: a message (and a code) for the user
├── ApiError              the API answered with ``{"error": {"code", "message"}}`` or a 4xx/5xx
└── ServerUnreachable     no answer at the URL (refused, timed out, bad address)

The root command group catches these, runkernel's own errors (from commands that talk to
the database directly), invalid settings and SQLAlchemy's, so each command body stays
about the happy path.
"""

from __future__ import annotations

from typing import Any

import pydantic
import typer
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from runkernel.entrypoints.cli.console import stderr
from runkernel.errors import RunkernelError


class CliError(Exception):
    def __init__(self, message: str, *, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(CliError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


class ServerUnreachable(CliError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the runkernel server is not reachable at {url} ({reason}); "
            "start one with `runkernel serve` or pass --url",
            code="unreachable",
        )


def print_error(code: str, message: str) -> None:
    stderr.print(f"[bold red]error[/]: [red]{escape(code)}[/]: {escape(message)}")


class ErrorHandlingGroup(TyperGroup):
    """The root group: turns expected failures of any subcommand into ``print_error``."""

    # ``ctx`` is click's Context, which newer typer releases vendor under a private name.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            print_error(exc.code, exc.message)
        except RunkernelError as exc:
            print_error(exc.code, exc.message)
        except pydantic.ValidationError as exc:  # Settings built from flags and RUNKERNEL_*
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"])
                print_error("configuration_error", f"{where}: {error['msg']}")
        except SQLAlchemyError as exc:
            # The first line names the cause (no such table, connection refused); the rest
            # is SQL and a link, noise for a command-line user.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            if "no such table" in reason or "does not exist" in reason:
                reason += " (run `runkernel db upgrade`)"
            print_error("database_error", reason)
        raise typer.Exit(1)
