"""The JSON text every stored value is written as: Python's ``json.dumps``, except that a
float keeps being a float on every database.

PostgreSQL's JSONB keeps numbers as ``numeric`` and prints them without an exponent, so
``1e+16`` (Python's repr of that float) comes back as the integer ``10000000000000000``.
Written as ``10000000000000000.0`` it keeps its fraction digit and reads back as the same
float. ``numeric`` has no negative zero either, so ``-0.0`` is written ``0.0`` on both
databases alike. Integers of any size (up to Python's 4300-digit conversion limit) and
every other value are written exactly as ``json.dumps`` writes them.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


def float_text(value: float) -> str:
    """The JSON text of a float; non-finite floats as ``json.dumps`` writes them."""
    if not math.isfinite(value):
        return json.dumps(value)
    if value == 0:
        return "0.0"
    text = float.__repr__(value)
    if "e+" not in text:
        return text
    return format(Decimal(text), "f") + ".0"


def dumps(value: Any) -> str:
    """``json.dumps(value)`` with floats written by :func:`float_text`."""
    text = json.dumps(value)
    if "e+" not in text and "-0.0" not in text:  # the common case: nothing to rewrite
        return text
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, parts: list[str]) -> None:
    if isinstance(value, float):
        parts.append(float_text(value))
    elif isinstance(value, dict):
        parts.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                parts.append(", ")
            # json.dumps turns int, float, bool and None keys into their JSON text
            parts.append(json.dumps(key if isinstance(key, str) else json.dumps(key)))
            parts.append(": ")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(", ")
            _encode(item, parts)
        parts.append("]")
    else:
        parts.append(json.dumps(value))
