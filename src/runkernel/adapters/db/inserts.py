"""``INSERT … ON CONFLICT DO NOTHING RETURNING <key>`` for both databases: how
repositories let a unique key (not a read-then-write) decide "at most one", without
savepoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table, TextClause, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.dml import Insert


def insert_ignore(table: Table, conn: Connection) -> Insert:
    return _insert_ignore(table, conn.dialect.name)


@lru_cache(maxsize=64)
def _insert_ignore(table: Table, dialect_name: str) -> Insert:
    # Built once per table and dialect, so executions reuse the compiled statement.
    # RETURNING tells whether the row went in: rowcount is not reliable for this statement
    # on every driver (psycopg reports -1).
    key = list(table.primary_key.columns)[0]
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing().returning(key)
    return sqlite.insert(table).on_conflict_do_nothing().returning(key)


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys), in their order.

    On PostgreSQL several rows go in as ONE prebuilt statement with one JSONB parameter:
    psycopg runs an executemany as a statement per row, each with its own parameter
    conversion, which for the handful of rows a completion writes (acks, events,
    transitions) cost more CPU than the rest of the transaction. SQLite's executemany has
    no round trips to save and stays."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) == 1:
        conn.execute(table.insert(), list(rows))
        return
    conn.execute(_bulk(table, tuple(rows[0])), {"rows": list(rows)})


@lru_cache(maxsize=64)
def _bulk(table: Table, columns: tuple[str, ...]) -> TextClause:
    names = ", ".join(columns)
    picked = ", ".join(f"r.{c}" for c in columns)
    return text(
        f"INSERT INTO {table.name} ({names}) SELECT {picked}"
        f" FROM jsonb_populate_recordset(NULL::{table.name}, :rows) WITH ORDINALITY AS r"
        " ORDER BY r.ordinality"
    ).bindparams(bindparam("rows", type_=JSONB))
