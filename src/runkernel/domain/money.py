"""Money is integer micro-dollars (1 USD = 1,000,000 micros) everywhere inside runkernel.

Floats appear only at the edges (JSON in and out); conversion goes through ``Decimal`` of
the value's shortest text so ``0.1`` is exactly 100,000 micros, never 99,999. An amount that
is not zero but rounds to zero micros is refused: a budget of ``1e-9`` USD stored as 0
would mean "nothing may be spent", which is not what its author wrote.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
# Every amount fits a signed 64-bit column of micros, with room to add (1e9 USD = 1e15).
MAX_USD = 1_000_000_000


# Half a micro-dollar: the smallest non-zero amount that does not round to 0.
SMALLEST_USD = Decimal("0.0000005")


def usd_to_micros(value: float | int | str | Decimal) -> int:
    """Convert a USD amount to micro-dollars, rounding half up to the nearest micro;
    ``ValueError`` for what is not an amount, one beyond ±``MAX_USD``, and a non-zero one
    that rounds to 0."""
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"not a money amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a money amount: {value!r}")
    if abs(amount) > MAX_USD:
        raise ValueError(f"money amount out of range: {value!r}; the limit is {MAX_USD} USD")
    try:
        micros = int((amount * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:  # beyond Decimal's precision: no budget is that large
        raise ValueError(f"money amount out of range: {value!r}") from exc
    if micros == 0 and amount != 0:
        raise ValueError(
            f"{value} USD rounds to 0 micro-dollars (amounts count in millionths of a "
            f"dollar): give 0, or at least {SMALLEST_USD} USD"
        )
    return micros


def micros_to_usd(micros: int) -> float:
    """The float USD value of ``micros``, for JSON output only."""
    return float(Decimal(micros) / MICROS_PER_USD)
