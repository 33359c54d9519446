"""The ``runkernel`` command line.

Operators run the kernel and manage tenants, tenants' keys and their own (``keys``,
``operators``) directly against the database (``server``);
tenants talk to the HTTP API with their key (``remote``); ``demo`` shows both at once;
``audit``, ``reconcile`` and ``reconciler`` inspect and run the audit sweep (``audit``).
Commands on the database name the one they use and never create one implicitly.
Every flag that overrides a setting also reads its ``RUNKERNEL_*`` variable.
"""

from __future__ import annotations

import typer

from runkernel.entrypoints.cli import audit, demo, keys, operators, remote, server
from runkernel.entrypoints.cli.console import widen_when_piped
from runkernel.entrypoints.cli.errors import ErrorHandlingGroup

app = typer.Typer(
    name="runkernel",
    help="A governed run kernel for LLM agent runs.",
    cls=ErrorHandlingGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _configure_output() -> None:
    widen_when_piped()


app.command()(server.serve)
app.command()(server.api)
app.command()(server.worker)
app.command()(server.relay)
app.command()(audit.reconciler)
app.command()(audit.reconcile)
app.command()(audit.audit)
app.add_typer(server.db_app, name="db")
app.add_typer(server.tenants_app, name="tenants", no_args_is_help=True)
app.add_typer(keys.keys_app, name="keys", no_args_is_help=True)
app.add_typer(operators.operators_app, name="operators", no_args_is_help=True)
app.add_typer(remote.agents_app, name="agents")
app.command()(remote.submit)
app.add_typer(remote.runs_app, name="runs")
app.command()(remote.show)
app.command("demo")(demo.demo_command)


def main() -> None:
    app()


__all__ = ["app", "main"]
