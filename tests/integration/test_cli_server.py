"""The operator commands against a real database, through typer's CliRunner:
``db upgrade``/``db current``, ``tenants create`` and ``keys create``."""

from __future__ import annotations

import json
import secrets

import pytest
from typer.testing import CliRunner

from conftest import make_settings
from runkernel.adapters.db import migrate
from runkernel.bootstrap import build_kernel
from runkernel.domain.records import Role
from runkernel.entrypoints.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"RUNKERNEL_API_KEY": None})
    # rich wraps long lines (temp paths vary in length): compare words, not line breaks
    return result.exit_code, " ".join(result.stdout.split()), result.stderr


def test_db_upgrade_brings_a_new_database_to_head(sqlite_url: str) -> None:
    code, _, err = invoke("db", "current", "--database-url", sqlite_url)
    assert code == 1
    assert "database_missing" in err and "runkernel db upgrade" in err

    code, out, _ = invoke("db", "upgrade", "--database-url", sqlite_url)
    assert code == 0, out
    head = migrate.head_revision()
    assert f"at revision {head} (head)" in out

    kernel = build_kernel(make_settings(sqlite_url))
    try:
        assert migrate.current_revision(kernel.db) == head
    finally:
        kernel.close()
    code, out, _ = invoke("db", "current", "--database-url", sqlite_url)
    assert (code, f"revision {head} (up to date)" in out) == (0, True)


def test_db_url_comes_from_the_environment_too(sqlite_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env={"RUNKERNEL_DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert sqlite_url.removeprefix("sqlite:///") in result.stdout


def test_tenants_create_json_prints_a_working_admin_key(database_url: str) -> None:
    assert invoke("db", "upgrade", "--database-url", database_url)[0] == 0
    code, out, err = invoke("tenants", "create", "acme", "--json", "--database-url", database_url)
    assert code == 0, err
    created = json.loads(out)
    assert set(created) == {"tenant_id", "api_key"}

    kernel = build_kernel(make_settings(database_url))
    try:
        principal = kernel.tenancy.authenticate(created["api_key"])
    finally:
        kernel.close()
    assert principal.tenant_id == created["tenant_id"]
    assert principal.role is Role.ADMIN


def test_keys_create_adds_a_user_key(sqlite_url: str) -> None:
    assert invoke("db", "upgrade", "--database-url", sqlite_url)[0] == 0
    tenant = json.loads(
        invoke("tenants", "create", "acme", "--json", "--database-url", sqlite_url)[1]
    )
    code, out, err = invoke(
        "keys",
        "create",
        "--tenant",
        tenant["tenant_id"],
        "--role",
        "user",
        "--json",
        "--database-url",
        sqlite_url,
    )
    assert code == 0, err
    key = json.loads(out)["api_key"]
    assert key != tenant["api_key"]
    kernel = build_kernel(make_settings(sqlite_url))
    try:
        principal = kernel.tenancy.authenticate(key)
    finally:
        kernel.close()
    assert (principal.tenant_id, principal.role) == (tenant["tenant_id"], Role.USER)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["tenants", "create", "acme"], "conflict"),
        (["keys", "create", "--tenant", "ten_nope"], "validation_error"),
    ],
)
def test_operator_errors_are_one_red_line_not_a_traceback(
    sqlite_url: str, args: list[str], code: str
) -> None:
    assert invoke("db", "upgrade", "--database-url", sqlite_url)[0] == 0
    assert invoke("tenants", "create", "acme", "--database-url", sqlite_url)[0] == 0
    exit_code, out, err = invoke(*args, "--database-url", sqlite_url)
    assert exit_code == 1
    assert f"error: {code}:" in err
    assert "Traceback" not in out + err


@pytest.mark.postgres
def test_postgres_commands_refuse_an_unmigrated_schema(postgres_server: str) -> None:
    """On PostgreSQL only `db upgrade` / --migrate change the schema; others say so."""
    import psycopg

    base, _ = postgres_server.rsplit("/", 1)
    name = f"rk_test_fresh_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        code, out, err = invoke("tenants", "create", "acme", "--database-url", f"{base}/{name}")
        assert code == 1
        assert "schema_not_current" in err and "runkernel db upgrade" in err
        assert "Traceback" not in out + err
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
