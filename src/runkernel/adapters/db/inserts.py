"""``INSERT … ON CONFLICT DO NOTHING RETURNING <key>`` for both databases: how
repositories let a unique key (not a read-then-write) decide "at most one", without
savepoints."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
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
