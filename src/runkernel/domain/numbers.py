"""JSON has numbers, not ints and floats: ``5.0`` is the integer 5 to JSON Schema and to
any client that writes it, while Python's ``json`` reads it as a float. Wherever an integer
is expected, an integral number is one."""

from __future__ import annotations

import math


def as_integer(value: object) -> int | None:
    """``value`` as an int when it is an integral number (``5``, ``5.0``), else None.
    Booleans are not numbers here, whatever Python says."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None
