"""Rejects JSON that parses in Python but cannot be stored on both databases.

Python's ``json`` accepts ``NaN``/``Infinity`` and lone UTF-16 surrogates (``"\\ud800"``),
and PostgreSQL refuses NUL characters in text and JSONB; each would otherwise surface
as a database error (a 500) long after validation. Deep nesting is capped so no later
recursive walk (``json.dumps``, template search) can hit Python's recursion limit.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64


def check_storable(value: Any) -> None:
    """Raise ``ValueError`` naming the first place in ``value`` that cannot be stored."""
    try:
        _walk(value)
    except _Unstorable as exc:
        where, problem = exc.args
        # The path may quote a bad key; escape it, since pydantic-core (Rust) cannot even
        # carry a message holding a lone surrogate.
        printable = where.encode("utf-8", "backslashreplace").decode("utf-8") or "body"
        raise ValueError(f"{printable}: {problem}") from None


class _Unstorable(Exception):
    pass


def _walk(value: Any) -> None:
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        item, where, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _Unstorable(where, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, float) and not math.isfinite(item):
            raise _Unstorable(where, "NaN and Infinity are not JSON numbers")
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                path = f"{where}.{key}" if where else str(key)
                _check_text(str(key), path)
                pending.append((child, path, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise _Unstorable(where, "text must not contain NUL (\\u0000) characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Unstorable(where, "text is not valid Unicode (a lone surrogate)") from None
