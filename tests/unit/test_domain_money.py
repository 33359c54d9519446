"""Money is integer micro-dollars; conversions from USD are exact and round half up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.money import MICROS_PER_USD, micros_to_usd, usd_to_micros


@pytest.mark.parametrize(
    ("usd", "micros"),
    [
        (0, 0),
        (1, 1_000_000),
        (0.1, 100_000),  # float 0.1 is 0.1000000000000000055…: must not drift
        (0.3, 300_000),
        (0.29, 290_000),  # 0.29 * 1e6 == 289999.99999999994 in float arithmetic
        (1.1, 1_100_000),
        (1e-6, 1),
        (0.000001, 1),
        (123.456789, 123_456_789),
        ("0.0000005", 1),  # half a micro rounds up
        (0.0000005, 1),
        ("0.0000015", 2),
        ("2.5000005", 2_500_001),
        ("-0.0000005", -1),  # half up means away from zero, symmetrically
        (Decimal("0.1234565"), 123_457),
        ("100", 100_000_000),
        (10**9, 10**15),
    ],
)
def test_usd_to_micros_is_exact(usd: float | int | str | Decimal, micros: int) -> None:
    result = usd_to_micros(usd)
    assert result == micros
    assert type(result) is int


@pytest.mark.parametrize("tiny", [1e-7, 1e-9, "0.00000049", 5e-324, "-0.0000004", Decimal("1E-30")])
def test_a_non_zero_amount_that_rounds_to_zero_is_refused(tiny: float | str | Decimal) -> None:
    with pytest.raises(ValueError, match="rounds to 0 micro-dollars"):
        usd_to_micros(tiny)


@pytest.mark.parametrize("zero", [0, 0.0, -0.0, "0", "0.000", Decimal("0E-10")])
def test_zero_is_zero(zero: float | str | Decimal) -> None:
    assert usd_to_micros(zero) == 0


@pytest.mark.parametrize("bad", ["abc", "", "1.2.3", float("nan"), float("inf"), "-Infinity"])
def test_non_amounts_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="not a money amount"):
        usd_to_micros(bad)  # type: ignore[arg-type]


def test_micros_to_usd() -> None:
    assert micros_to_usd(1) == 1e-6
    assert micros_to_usd(100_000) == 0.1
    assert micros_to_usd(0) == 0.0
    assert MICROS_PER_USD == 1_000_000


six_places = st.decimals(
    min_value=Decimal("-1000000000"),
    max_value=Decimal("1000000000"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)


@given(six_places)
def test_decimals_with_six_places_convert_exactly_from_decimal_str_and_float(d: Decimal) -> None:
    micros = int(d.scaleb(6))
    assert usd_to_micros(d) == micros
    assert usd_to_micros(str(d)) == micros
    assert usd_to_micros(float(d)) == micros
    assert micros_to_usd(micros) == float(d)


@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_micros_round_trip_through_usd_floats(micros: int) -> None:
    assert usd_to_micros(micros_to_usd(micros)) == micros


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=0, max_value=9),
)
def test_a_seventh_decimal_rounds_half_up(micros: int, seventh: int) -> None:
    amount = Decimal(micros).scaleb(-6) + (
        Decimal(seventh) if micros >= 0 else -Decimal(seventh)
    ).scaleb(-7)
    away = 1 if seventh >= 5 else 0
    if micros == 0 and 0 < seventh < 5:  # not zero, but below half a micro
        with pytest.raises(ValueError, match="rounds to 0"):
            usd_to_micros(amount)
        return
    assert usd_to_micros(amount) == micros + (away if micros >= 0 else -away)
