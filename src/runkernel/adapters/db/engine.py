"""Engines for the two supported databases, tuned for a run queue.

SQLite: WAL, ``synchronous=NORMAL``, a busy timeout, and ``BEGIN IMMEDIATE`` for every
write transaction so a claim can never upgrade a read lock and deadlock. Writers inside
one process also take a process-wide lock first: SQLite serializes writers anyway, and
queuing them on a Python lock avoids its busy handler's millisecond sleeps.
PostgreSQL: psycopg 3 with a pool sized to the worker concurrency.

Both: JSON goes through :mod:`codec`, and a driver error that means the storage cannot
take writes (full disk, read-only database, server gone) becomes
``StorageUnavailableError`` here, for every statement; the :class:`Database` remembers
the latest one until a write commits again, which is what ``/readyz`` reports.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url

from runkernel.adapters.db import codec, faults
from runkernel.errors import ConfigurationError, StorageUnavailableError

READ_ONLY = "runkernel_read_only"

log = logging.getLogger(__name__)


@dataclass
class Database:
    engine: Engine
    is_sqlite: bool
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    # (monotonic time, reason) of the latest storage failure not yet followed by a
    # committed write; set by the error hook, cleared by a unit of work's commit.
    _failure: tuple[float, str] | None = field(default=None, repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    def storage_failed(self, reason: str) -> None:
        self._failure = (time.monotonic(), reason)

    def write_committed(self) -> None:
        self._failure = None

    def recent_failure(self, within_s: float) -> str | None:
        """The reason of a storage failure in the last ``within_s`` seconds that no
        committed write has followed, or None."""
        failure = self._failure
        if failure is None or time.monotonic() - failure[0] > within_s:
            return None
        return failure[1]


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``postgres://`` URLs and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def open_database(url: str, *, pool_size: int = 10) -> Database:
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises several types for a malformed URL
        raise ConfigurationError(f"bad database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = Database(_sqlite_engine(url), is_sqlite=True)
    elif backend == "postgresql":
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            json_serializer=codec.dumps,
            json_deserializer=codec.loads,
        )
        db = Database(engine, is_sqlite=False)
    else:
        raise ConfigurationError(f"unsupported database {backend!r}: use sqlite or postgresql")
    _map_errors(db)
    return db


def _map_errors(db: Database) -> None:
    @event.listens_for(db.engine, "handle_error")
    def _on_error(context: ExceptionContext) -> BaseException | None:
        reason = faults.unavailable(context.original_exception, disconnected=context.is_disconnect)
        if reason is None:
            return None
        db.storage_failed(reason)
        # The driver's text names hosts and files: it goes to the log, not to clients.
        log.warning("storage unavailable: %s: %s", reason, context.original_exception)
        # SQLAlchemy raises what this returns, from the driver's error.
        return StorageUnavailableError(f"storage unavailable: {reason}; try again later")


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20,
        max_overflow=20,
        json_serializer=codec.dumps,
        json_deserializer=codec.loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Own the transaction boundary ourselves instead of pysqlite's implicit BEGIN.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
