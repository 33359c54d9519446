"""``runkernel operators create-key|list-keys|revoke-key`` against a real database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import make_settings
from runkernel.bootstrap import build_kernel
from runkernel.domain.records import Principal, Role
from runkernel.entrypoints.cli import app
from runkernel.errors import AuthenticationError

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


def principal_of(database_url: str, api_key: str) -> Principal | None:
    kernel = build_kernel(make_settings(database_url))
    try:
        return kernel.tenancy.authenticate(api_key)
    except AuthenticationError:
        return None
    finally:
        kernel.close()


@pytest.fixture
def url(database_url: str) -> str:
    assert invoke(database_url, "db", "upgrade")[0] == 0
    return database_url


def test_create_list_revoke(url: str) -> None:
    made = as_json(url, "operators", "create-key")
    assert set(made) == {"id", "api_key"}
    principal = principal_of(url, made["api_key"])
    assert principal is not None
    assert (principal.role, principal.home_tenant_id, principal.key_id) == (
        Role.OPERATOR,
        None,
        made["id"],
    )

    [listed] = as_json(url, "operators", "list-keys")["keys"]
    assert (listed["id"], listed["revoked_at"]) == (made["id"], None)
    assert made["api_key"] not in json.dumps(listed)

    revoked = as_json(url, "operators", "revoke-key", made["id"])
    assert revoked["id"] == made["id"] and revoked["revoked_at"] is not None
    assert principal_of(url, made["api_key"]) is None
    [listed] = as_json(url, "operators", "list-keys")["keys"]
    assert listed["revoked_at"] == revoked["revoked_at"]


def test_the_table_forms_show_the_secret_once(url: str) -> None:
    code, out, err = invoke(url, "operators", "create-key")
    assert code == 0, err
    secret = next(word for word in out.split() if word.startswith("rko_"))
    assert principal_of(url, secret) is not None
    code, out, err = invoke(url, "operators", "list-keys")
    assert code == 0, err
    assert "operator keys (1)" in out and secret not in out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["operators", "revoke-key", "opk_nope"], "not_found"),
        (["operators", "revoke-key", "{revoked}"], "key_revoked"),
        (["keys", "create", "--tenant", "ten_x", "--role", "operator"], "usage"),
    ],
)
def test_errors_are_one_line(url: str, args: list[str], code: str) -> None:
    gone = as_json(url, "operators", "create-key")
    as_json(url, "operators", "revoke-key", gone["id"])
    exit_code, out, err = invoke(url, *[a.format(revoked=gone["id"]) for a in args])
    assert "Traceback" not in out + err
    if code == "usage":  # a tenant's key cannot be an operator key: not even a choice
        assert exit_code == 2 and "operator" in err
        return
    assert exit_code == 1
    assert f"error: {code}:" in " ".join(err.split())
