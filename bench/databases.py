"""Fresh, throwaway databases for one measurement: a SQLite file in a temporary directory,
or a randomly named PostgreSQL database that is dropped afterwards (never anything the
benchmark did not create)."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

DbKind = Literal["sqlite", "postgres"]
DB_KINDS: tuple[DbKind, ...] = ("sqlite", "postgres")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def default_postgres_url() -> str:
    """The server to create benchmark databases on (``RUNKERNEL_TEST_POSTGRES_URL``)."""
    return os.environ.get("RUNKERNEL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@contextmanager
def fresh_database(kind: DbKind, *, postgres_url: str | None = None) -> Iterator[str]:
    """Yield the URL of an empty database that is removed when the block exits."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="rk-bench-") as directory:
            yield f"sqlite:///{os.path.join(directory, 'bench.db')}"
        return
    with _postgres_database(postgres_url or default_postgres_url()) as url:
        yield url


@contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    import psycopg

    name = f"rk_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
