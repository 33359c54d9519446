"""Money is integer micro-dollars (1 USD = 1,000,000 micros) everywhere inside runkernel.

Floats appear only at the edges (JSON in and out); conversion goes through ``Decimal`` of
the value's shortest text so ``0.1`` is exactly 100,000 micros, never 99,999.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000


def usd_to_micros(value: float | int | str | Decimal) -> int:
    """Convert a USD amount to micro-dollars, rounding half up to the nearest micro."""
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"not a money amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a money amount: {value!r}")
    try:
        return int((amount * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:  # beyond Decimal's precision: no budget is that large
        raise ValueError(f"money amount out of range: {value!r}") from exc


def micros_to_usd(micros: int) -> float:
    """The float USD value of ``micros``, for JSON output only."""
    return float(Decimal(micros) / MICROS_PER_USD)
