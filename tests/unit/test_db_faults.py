"""Which driver errors mean the storage cannot take writes: by the driver's own code (SQLite
result code, PostgreSQL SQLSTATE), so faults that tests cannot provoke (a PostgreSQL disk
full, an admin shutdown) map the same way as those they can."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runkernel.adapters.db.engine import open_database
from runkernel.adapters.db.faults import unavailable


class OperationalError(Exception):
    """Shaped like psycopg's: a class name and an optional ``sqlstate``."""

    def __init__(self, sqlstate: str | None = None) -> None:
        super().__init__("server said so")
        self.sqlstate = sqlstate


class IntegrityError(OperationalError):
    pass


def sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError("x")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (8, "the database is read-only"),
        (8 | (1 << 8), "the database is read-only"),  # SQLITE_READONLY_RECOVERY
        (13, "the database or disk is full"),
        (14, "the database file cannot be opened"),
        (10 | (3 << 8), "a disk I/O error"),  # SQLITE_IOERR_WRITE
    ],
)
def test_sqlite_result_codes(code: int, reason: str) -> None:
    assert unavailable(sqlite_error(code)) == reason


@pytest.mark.parametrize("code", [1, 5, 19, 2067])  # error, busy, constraint, unique
def test_other_sqlite_errors_are_not_storage_faults(code: int) -> None:
    assert unavailable(sqlite_error(code)) is None


@pytest.mark.parametrize(
    ("sqlstate", "fragment"),
    [
        ("53100", "disk is full"),
        ("25006", "read-only"),
        ("57P01", "shutting down"),
        ("57P03", "not accepting connections"),
        ("08006", "connection to the database failed"),
        ("53300", "out of resources"),
        ("58030", "disk I/O error"),
    ],
)
def test_postgres_sqlstates(sqlstate: str, fragment: str) -> None:
    reason = unavailable(OperationalError(sqlstate))
    assert reason is not None and fragment in reason


@pytest.mark.parametrize("sqlstate", ["23505", "40001", "57014", "22P02", "42P01"])
def test_other_postgres_errors_are_not_storage_faults(sqlstate: str) -> None:
    assert unavailable(IntegrityError(sqlstate)) is None


def test_no_server_to_answer_is_unavailable() -> None:
    assert unavailable(OperationalError()) == "the database cannot be reached"
    assert unavailable(ValueError("x"), disconnected=True) == "the database cannot be reached"
    assert unavailable(ValueError("x")) is None


def test_a_recorded_failure_holds_until_a_write_commits_or_it_lapses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = [1000.0]
    monkeypatch.setattr("runkernel.adapters.db.engine.time.monotonic", lambda: now[0])
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert db.recent_failure(30) is None
        db.storage_failed("the database is read-only")
        now[0] += 29
        assert db.recent_failure(30) == "the database is read-only"
        now[0] += 2
        assert db.recent_failure(30) is None  # lapsed: the probe decides alone again
        db.storage_failed("the database or disk is full")
        db.write_committed()
        assert db.recent_failure(30) is None
    finally:
        db.dispose()
