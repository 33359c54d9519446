"""Which driver errors mean the database cannot take writes (or cannot be reached).

:func:`unavailable` reads the driver's own error code — SQLite's result code, PostgreSQL's
SQLSTATE — rather than message text, so a translated server message still maps. The
engine's ``handle_error`` hook is the one caller: it raises ``StorageUnavailableError``
from the driver error, whatever statement hit it.
"""

from __future__ import annotations

# SQLite primary result codes (an extended code carries one in its low byte).
_SQLITE = {
    8: "the database is read-only",  # SQLITE_READONLY
    10: "a disk I/O error",  # SQLITE_IOERR
    13: "the database or disk is full",  # SQLITE_FULL
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
}
# PostgreSQL SQLSTATEs, exact codes first, then classes.
_POSTGRES = {
    "25006": "the database is read-only (read-only transaction)",
    "53100": "the database server's disk is full",
    "57P01": "the database server is shutting down",
    "57P02": "the database server crashed",
    "57P03": "the database server is not accepting connections yet",
    "58030": "a disk I/O error on the database server",
}
_POSTGRES_CLASSES = {
    "08": "the connection to the database failed",
    "53": "the database server is out of resources",
}


def unavailable(error: BaseException, *, disconnected: bool = False) -> str | None:
    """Why ``error`` (a DBAPI error) means the storage is unavailable, or None."""
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return _SQLITE.get(sqlite_code & 0xFF)
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return _POSTGRES.get(sqlstate) or _POSTGRES_CLASSES.get(sqlstate[:2])
    if disconnected or type(error).__name__ == "OperationalError":
        # psycopg raises OperationalError without a SQLSTATE when there is no server to
        # give one: connection refused, server gone mid-query.
        return "the database cannot be reached"
    return None
