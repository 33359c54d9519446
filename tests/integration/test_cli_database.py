"""Commands name the database they use and never create one implicitly: run where no
database is (the wrong directory, a mistyped URL) every command that talks to the database
fails with a message saying to run `runkernel db upgrade`, and leaves no file behind;
a schema that is absent or behind is refused the same way, on both databases."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from typer.testing import CliRunner

from conftest import make_settings
from e2e.processes import Process, free_port, wait_healthy
from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database
from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.cli import app

runner = CliRunner()
NO_ENV = {"RUNKERNEL_DATABASE_URL": None, "RUNKERNEL_API_KEY": None}

# Every command on the database that runs once and exits.
OPERATOR_COMMANDS = [
    ["tenants", "create", "acme"],
    ["tenants", "create", "acme", "--json"],
    ["keys", "create", "--tenant", "ten_x"],
    ["audit", "run_x"],
    ["reconcile"],
    ["reconcile", "--json"],
    ["db", "current"],
]
# Long-running ones: started as processes, so a regression cannot hang the test.
PROCESS_COMMANDS = [
    ["worker"],
    ["relay"],
    ["reconciler"],
    ["api", "--port", "0"],
]


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=NO_ENV)
    # rich may wrap long lines (temp paths vary in length): compare words, not breaks
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


@pytest.mark.parametrize("args", OPERATOR_COMMANDS, ids=" ".join)
def test_without_a_database_commands_fail_and_create_none(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default ./runkernel.db, in a directory without one
    code, out, err = invoke(*args)
    assert code == 1, out + err
    assert "database_missing" in err and "runkernel db upgrade" in err
    assert f"sqlite:///{tmp_path / 'runkernel.db'}" in err  # which database it looked for
    assert "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", PROCESS_COMMANDS, ids=" ".join)
def test_without_a_database_processes_fail_and_create_none(args: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runkernel", *args],
        cwd=tmp_path,
        env=_base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "database_missing" in done.stderr and "runkernel db upgrade" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_creates_it_and_then_commands_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "runkernel.db"
    code, out, err = invoke("db", "upgrade")
    assert code == 0, err
    assert f"creating database sqlite:///{database}" in err
    assert f"sqlite:///{database}" in " ".join(out.split())

    code, out, err = invoke("tenants", "create", "acme", "--json")
    assert code == 0, err
    created = json.loads(out)  # stdout stays pure JSON; the database is named on stderr
    assert f"using database sqlite:///{database}" in err

    kernel = build_kernel(make_settings(f"sqlite:///{database}"))
    try:
        assert kernel.tenancy.authenticate(created["api_key"]).tenant_id == created["tenant_id"]
    finally:
        kernel.close()

    code, out, _ = invoke("db", "current")
    assert code == 0
    assert f"database sqlite:///{database}: revision {migrate.head_revision()}" in out


def test_a_sqlite_file_without_the_schema_is_refused_not_migrated(tmp_path: Path) -> None:
    database = tmp_path / "other.db"
    sqlite3.connect(database).close()  # some file, not a runkernel database
    url = f"sqlite:///{database}"
    code, out, err = invoke("tenants", "create", "acme", "--database-url", url)
    assert code == 1, out
    assert "schema_not_current" in err and "runkernel db upgrade" in err
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_schema_behind_is_refused_on_both_databases(database_url: str) -> None:
    kernel = build_kernel(make_settings(database_url))
    try:
        kernel.migrate()
        downgrade(kernel.db, "0003")  # as if this runkernel were newer than the database
        code, out, err = invoke("reconcile", "--json", "--database-url", database_url)
        assert code == 1 and out == ""
        assert "schema_not_current" in err and "at 0003" in err and "runkernel db upgrade" in err
        assert migrate.current_revision(kernel.db) == "0003"  # refused, not migrated
        assert invoke("db", "upgrade", "--database-url", database_url)[0] == 0
        code, out, err = invoke("reconcile", "--json", "--database-url", database_url)
        assert (code, json.loads(out)) == (0, [])
    finally:
        kernel.migrate()  # the session's PostgreSQL database stays at head for other tests
        kernel.close()


def downgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_serve_creates_its_embedded_file_and_says_so(tmp_path: Path) -> None:
    """The embedded default's convenience: `serve` makes its own SQLite file, named."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    args = ["serve", "--port", str(port), "--log-level", "warning"]
    serve = Process("serve", args, _base_env(), tmp_path, cwd=home)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", serve)
        assert f"creating database sqlite:///{home / 'runkernel.db'}" in serve.output
    finally:
        assert serve.stop() == 0, serve.output
    assert (home / "runkernel.db").exists()


def _base_env() -> dict[str, str]:
    """This environment without any RUNKERNEL_* setting: the defaults, as a new user has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNKERNEL_")}
    env["RUNKERNEL_MODE"] = "test"
    return env
