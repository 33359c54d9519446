"""``runkernel keys``: operators' commands on any tenant's API keys, straight against the
database — ``create``, ``list``, ``revoke`` and ``rotate``. Tenants do the same for their
own keys over the API (``/api/v1/keys``) with an admin key.

A secret is printed only by the command that makes it (``create``, ``rotate``); listings
show id, prefix, role and dates. Rotation has no grace period: the old key is refused
from the moment the new one is printed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from runkernel.domain.records import ApiKey, Role
from runkernel.entrypoints.cli import options as opt
from runkernel.entrypoints.cli.console import stdout
from runkernel.entrypoints.cli.server import open_kernel

keys_app = typer.Typer(help="API keys (direct database access, for operators).")

TenantId = Annotated[str, typer.Option("--tenant", help="tenant id")]
KeyId = Annotated[str, typer.Argument(help="key id (from `runkernel keys list`)")]
SHOWN_ONCE = "[dim]The key is shown only once; runkernel keeps only its hash.[/]"


class TenantRole(StrEnum):
    """The choices of ``--role``: an operator key is of no tenant (``runkernel operators``)."""

    ADMIN = Role.ADMIN.value
    USER = Role.USER.value


@keys_app.command("create")
def keys_create(
    tenant: TenantId,
    role: Annotated[TenantRole, typer.Option("--role", help="admin or user")] = TenantRole.USER,
    as_json: opt.Json = False,
    database_url: opt.DatabaseUrl = None,
) -> None:
    """Create another API key of a tenant (shown only once)."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        api_key = kernel.tenancy.create_api_key(tenant, Role(role))
    if as_json:
        print(json.dumps({"tenant_id": tenant, "role": role.value, "api_key": api_key}))
        return
    stdout.print(f"{role.value} key of {tenant}: [bold green]{api_key}[/] (shown only once)")


@keys_app.command("list")
def keys_list(
    tenant: TenantId, as_json: opt.Json = False, database_url: opt.DatabaseUrl = None
) -> None:
    """A tenant's keys, oldest first, revoked ones included; never a secret."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        keys = kernel.tenancy.keys_of(tenant)
    if as_json:
        print(json.dumps({"tenant_id": tenant, "keys": [key_json(k) for k in keys]}))
        return
    stdout.print(
        key_table(
            f"keys of {tenant} ({len(keys)})",
            [(k.id, k.prefix, k.role.value, k.created_at_ms, k.revoked_at_ms) for k in keys],
        )
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: KeyId, as_json: opt.Json = False, database_url: opt.DatabaseUrl = None
) -> None:
    """Revoke a key: its next request gets 401."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        key = kernel.tenancy.revoke(key_id)
    if as_json:
        print(json.dumps(key_json(key)))
        return
    stdout.print(f"revoked {key.role.value} key {key.id} of {key.tenant_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: KeyId, as_json: opt.Json = False, database_url: opt.DatabaseUrl = None
) -> None:
    """Replace a key by a new one of the same role (shown only once); the old one is
    revoked at once (no grace period)."""
    with open_kernel(opt.build_settings(database_url=database_url)) as kernel:
        rotation = kernel.tenancy.rotate(key_id)
    new = rotation.new
    if as_json:
        body = {"key": key_json(new.key), "api_key": new.api_key}
        print(json.dumps({**body, "revoked": key_json(rotation.revoked)}))
        return
    stdout.print(
        f"{new.key.role.value} key {new.key.id} of {new.key.tenant_id}: "
        f"[bold green]{new.api_key}[/]\nreplaces {rotation.revoked.id}, revoked now\n{SHOWN_ONCE}"
    )


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant_id": key.tenant_id,
        "prefix": key.prefix,
        "role": key.role.value,
        "created_at": at(key.created_at_ms),
        "revoked_at": at(key.revoked_at_ms) if key.revoked_at_ms is not None else None,
    }


def key_table(title: str, rows: list[tuple[str, str, str | None, int, int | None]]) -> Table:
    """Keys as a table: id, prefix, role (a column only when some row has one), created and
    revoked times; shared by tenant and operator keys so both listings read alike."""
    with_role = any(role is not None for _, _, role, _, _ in rows)
    table = Table(title=title, title_justify="left")
    columns = (
        ("id", "prefix", "role", "created", "revoked")
        if with_role
        else ("id", "prefix", "created", "revoked")
    )
    for column in columns:
        table.add_column(column, no_wrap=True)
    for key_id, prefix, role, created_ms, revoked_ms in rows:
        revoked = Text(at(revoked_ms), style="red") if revoked_ms is not None else Text("-")
        cells = [key_id, prefix + "…", *([role or ""] if with_role else []), at(created_ms)]
        table.add_row(*cells, revoked)
    return table


def at(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
