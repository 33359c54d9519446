"""``runkernel keys list|revoke|rotate`` (and ``create``) against a real database: what an
operator does to any tenant's keys, with the same rules as the API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import make_settings
from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.cli import app
from runkernel.errors import AuthenticationError
from runkernel.services.tenancy import hash_key

runner = CliRunner()


def invoke(database_url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(
        app, [*args, "--database-url", database_url], env={"RUNKERNEL_API_KEY": None}
    )
    return result.exit_code, result.stdout, result.stderr


def as_json(database_url: str, *args: str) -> Any:
    code, out, err = invoke(database_url, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def url(database_url: str) -> str:
    assert invoke(database_url, "db", "upgrade")[0] == 0  # no command creates it implicitly
    return database_url


def authenticates(database_url: str, api_key: str) -> bool:
    kernel = build_kernel(make_settings(database_url))
    try:
        kernel.tenancy.authenticate(api_key)
    except AuthenticationError:
        return False
    finally:
        kernel.close()
    return True


def test_list_revoke_rotate(url: str) -> None:
    tenant = as_json(url, "tenants", "create", "acme")
    user = as_json(url, "keys", "create", "--tenant", tenant["tenant_id"], "--role", "user")

    listed = as_json(url, "keys", "list", "--tenant", tenant["tenant_id"])
    assert listed["tenant_id"] == tenant["tenant_id"]
    assert [(k["role"], k["revoked_at"]) for k in listed["keys"]] == [
        ("admin", None),
        ("user", None),
    ]
    text = json.dumps(listed)
    for secret in (tenant["api_key"], user["api_key"]):
        assert secret not in text and hash_key(secret) not in text
    admin_id, user_id = (k["id"] for k in listed["keys"])

    rotated = as_json(url, "keys", "rotate", user_id)
    assert rotated["revoked"]["id"] == user_id and rotated["revoked"]["revoked_at"]
    assert rotated["key"]["role"] == "user" and rotated["key"]["tenant_id"] == tenant["tenant_id"]
    assert not authenticates(url, user["api_key"])
    assert authenticates(url, rotated["api_key"])

    revoked = as_json(url, "keys", "revoke", rotated["key"]["id"])
    assert revoked["id"] == rotated["key"]["id"] and revoked["revoked_at"]
    assert not authenticates(url, rotated["api_key"])

    listed = as_json(url, "keys", "list", "--tenant", tenant["tenant_id"])
    assert [k["id"] for k in listed["keys"] if k["revoked_at"] is None] == [admin_id]

    code, out, _ = invoke(url, "keys", "list", "--tenant", tenant["tenant_id"])
    assert code == 0 and admin_id in out and tenant["api_key"] not in out


def test_rotate_prints_the_new_secret_once_in_the_table_form(url: str) -> None:
    tenant = as_json(url, "tenants", "create", "acme")
    [admin] = as_json(url, "keys", "list", "--tenant", tenant["tenant_id"])["keys"]
    code, out, err = invoke(url, "keys", "rotate", admin["id"])
    assert code == 0, err
    secret = next(word for word in out.split() if word.startswith("rk_"))
    assert authenticates(url, secret) and not authenticates(url, tenant["api_key"])


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["keys", "revoke", "key_nope"], "not_found"),
        (["keys", "rotate", "key_nope"], "not_found"),
        (["keys", "list", "--tenant", "ten_nope"], "validation_error"),
        (["keys", "revoke", "{admin}"], "last_admin_key"),
    ],
)
def test_operator_key_errors_are_one_line(url: str, args: list[str], code: str) -> None:
    tenant = as_json(url, "tenants", "create", "acme")
    [admin] = as_json(url, "keys", "list", "--tenant", tenant["tenant_id"])["keys"]
    exit_code, out, err = invoke(url, *[a.format(admin=admin["id"]) for a in args])
    assert exit_code == 1
    assert f"error: {code}:" in " ".join(err.split())
    assert "Traceback" not in out + err
    assert authenticates(url, tenant["api_key"])
