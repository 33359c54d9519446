"""Ids in paths and cursors in queries.

Path ids that cannot name anything are answered 404 before they reach the database
(PostgreSQL would reject a NUL byte in one with an error, not an empty result). A cursor is
the id of the last row of the previous page, so one that is not an id of the listed kind
was never handed out: it is refused (422) instead of silently starting a page somewhere.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Query

from runkernel.domain.ids import id_pattern
from runkernel.entrypoints.api.schemas import ID_PATTERN
from runkernel.errors import NotFoundError

_ID = re.compile(ID_PATTERN)


def require_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise NotFoundError(f"no {what} {value!r}")
    return value


def cursor_query(prefix: str) -> Any:
    """The ``cursor`` query parameter of a list of ids made with ``prefix``."""
    return Query(
        pattern=id_pattern(prefix),
        description="next_cursor of the previous page; nothing else is a cursor",
    )
