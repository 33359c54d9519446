"""Whether the database takes writes now: what ``/readyz`` reports besides the schema.

No probe alone sees every fault, so three signals are combined:

* a write in this process failed with storage unavailable less than
  ``RECENT_FAILURE_S`` ago and no unit of work has committed a write since — the
  failure the users saw, whatever its cause (a PostgreSQL data disk that is full while a
  small update still fits in a page);
* a real write: the transaction every write opens (``BEGIN IMMEDIATE`` on SQLite), a
  no-op ``UPDATE`` of the schema version row, and a COMMIT — which a read-only database
  (file mode, ``query_only``, ``default_transaction_read_only``), an unreachable server,
  or a disk that cannot take the WAL append all refuse;
* on SQLite, whether the file is at its page limit (``max_page_count``) with no free
  page: the probe's in-place update fits while every insert fails.

The probe does not clear a recorded failure (an in-place update may succeed where the
failed insert would not); the record lapses after ``RECENT_FAILURE_S``, so an instance
taken out of rotation, which sees no writes, is not kept out for good.
"""

from __future__ import annotations

from sqlalchemy import text

from runkernel.adapters.db.engine import Database
from runkernel.adapters.db.migrate import VERSION_TABLE
from runkernel.errors import StorageUnavailableError

RECENT_FAILURE_S = 30.0

_TOUCH = text(f"UPDATE {VERSION_TABLE} SET version_num = version_num")


def write_problem(db: Database) -> str | None:
    """Why writes fail now, or None when they work."""
    recent = db.recent_failure(RECENT_FAILURE_S)
    if recent is not None:
        return recent
    try:
        return _probe(db)
    except StorageUnavailableError as exc:
        # The error hook has just recorded the bare reason.
        return db.recent_failure(RECENT_FAILURE_S) or exc.message


def _probe(db: Database) -> str | None:
    if db.is_sqlite:
        with db.write_lock, db.engine.connect() as conn, conn.begin():
            pages, limit, free = (
                conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("page_count", "max_page_count", "freelist_count")
            )
            if pages >= limit and free == 0:
                return f"the database is full ({pages} pages, its max_page_count)"
            conn.execute(_TOUCH)
        return None
    with db.engine.connect() as conn, conn.begin():
        conn.execute(_TOUCH)
    return None
