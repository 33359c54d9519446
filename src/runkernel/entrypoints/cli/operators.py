"""``runkernel operators``: the cross-tenant keys of the people who run runkernel, straight
against the database — ``create-key``, ``list-keys`` and ``revoke-key``.

An operator key belongs to no tenant (services/operators.py). Its secret is printed only
by ``create-key``; listings show id, prefix and dates.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from runkernel.domain.records import OperatorKey
from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli.console import stdout
from runkernel.entrypoints.cli.keys import SHOWN_ONCE, at, key_table
from runkernel.entrypoints.cli.server import open_kernel

operators_app = typer.Typer(help="Operator keys (direct database access, for operators).")

KeyId = Annotated[str, typer.Argument(help="operator key id (from `list-keys`)")]


@operators_app.command("create-key")
def create_key(as_json: opt.Json = False, database_url: opt.DatabaseUrl = None) -> None:
    """Create an operator key, of no tenant (shown only once)."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        made = kernel.operators.create_key()
    if as_json:
        print(json.dumps({"id": made.key.id, "api_key": made.api_key}))
        return
    stdout.print(f"operator key {made.key.id}: [bold green]{made.api_key}[/]\n{SHOWN_ONCE}")


@operators_app.command("list-keys")
def list_keys(as_json: opt.Json = False, database_url: opt.DatabaseUrl = None) -> None:
    """Operator keys, oldest first, revoked ones included; never a secret."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        keys = kernel.operators.list_keys()
    if as_json:
        print(json.dumps({"keys": [operator_key_json(k) for k in keys]}))
        return
    stdout.print(
        key_table(
            f"operator keys ({len(keys)})",
            [(k.id, k.prefix, None, k.created_at_ms, k.revoked_at_ms) for k in keys],
        )
    )


@operators_app.command("revoke-key")
def revoke_key(
    key_id: KeyId, as_json: opt.Json = False, database_url: opt.DatabaseUrl = None
) -> None:
    """Revoke an operator key: its next request gets 401."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        key = kernel.operators.revoke_key(key_id)
    if as_json:
        print(json.dumps(operator_key_json(key)))
        return
    stdout.print(f"revoked operator key {key.id}")


def operator_key_json(key: OperatorKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "created_at": at(key.created_at_ms),
        "revoked_at": at(key.revoked_at_ms) if key.revoked_at_ms is not None else None,
    }
