"""How JSON columns are written and read, on both databases.

Writing: :func:`runkernel.domain.jsontext.dumps` (the engine's serializer), so floats stay
floats on PostgreSQL. SQLite gives a ``JSON`` column NUMERIC affinity, which turns the text
``1000000000000000000000000000000`` into the REAL ``1e+30`` (and ``1.0`` into the INTEGER
``1``) on the way in, so :class:`SqliteJson` binds a value that is a bare number as a BLOB,
which SQLite stores as given.

Reading never raises: a stored value that cannot be parsed (nested past the parser's
recursion limit, an integer too long to convert, not JSON at all) or that could not be
stored today (nested deeper than ``MAX_DEPTH``, NaN, NUL, lone surrogates) reads back as an
``omitted`` marker saying why, so a row written before those limits existed still shows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Dialect
from sqlalchemy.types import TypeDecorator

from runkernel.domain.jsontext import dumps
from runkernel.domain.storable import MAX_DEPTH, check_storable, omitted

__all__ = ["SqliteJson", "dumps", "loads"]

_NUMBER_START = frozenset("-0123456789")
# What in a JSON text could make its value unstorable: NaN/Infinity, an escaped NUL or
# surrogate (a lone one, or a pair: false alarms only cost the full check).
_SUSPECT = re.compile(r"NaN|Infinity|\\u(?:0000|[dD][89a-fA-F])")


def loads(data: str | bytes) -> Any:
    try:
        value = json.loads(data)
    except RecursionError:
        return omitted("the stored value is nested too deeply to be read back")
    except ValueError as exc:
        return omitted(f"the stored value cannot be read back: {exc}")
    if not _may_be_unstorable(data):
        return value
    try:
        check_storable(value)
    except ValueError as exc:
        return omitted(f"the stored value cannot be shown: {exc}")
    return value


def _may_be_unstorable(data: str | bytes) -> bool:
    """False when the text proves its value storable, without walking the value: a value
    parsed from JSON has string keys and JSON types only, it cannot nest deeper than its
    text has brackets, and anything else check_storable refuses shows in the text. This
    runs on every JSON column read; the walk is for the rare text that fails it."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if text.count("[") + text.count("{") > MAX_DEPTH:
        return True
    return _SUSPECT.search(text) is not None


class SqliteJson(TypeDecorator[Any]):
    """SQLite's JSON column: DDL as ``JSON``, values written and read by this module."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | bytes]:
        def process(value: Any) -> str | bytes:
            text = dumps(value)
            return text.encode("ascii") if text[:1] in _NUMBER_START else text

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        def process(value: Any) -> Any:
            if value is None or isinstance(value, str | bytes):
                return None if value is None else loads(value)
            # A number stored as text before the BLOB binding: SQLite's affinity already
            # made it an INTEGER or a REAL (an overlong one an infinite REAL).
            if isinstance(value, float) and not math.isfinite(value):
                return omitted("the stored number is too large to be read back")
            return value

        return process
