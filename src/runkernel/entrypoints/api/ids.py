"""Path ids that cannot name anything are answered 404 before they reach the database
(PostgreSQL would reject a NUL byte in one with an error, not an empty result)."""

from __future__ import annotations

import re

from runkernel.entrypoints.api.schemas import ID_PATTERN
from runkernel.errors import NotFoundError

_ID = re.compile(ID_PATTERN)


def require_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise NotFoundError(f"no {what} {value!r}")
    return value
