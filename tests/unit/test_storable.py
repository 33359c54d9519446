"""What may be stored and how big it is: the one check every stored run value passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.adapters.db import codec
from runkernel.domain import jsontext
from runkernel.domain.storable import (
    MAX_DEPTH,
    SizeLimit,
    TooLarge,
    bounded,
    check_storable,
    omitted,
    printable,
    stored_size,
)

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)
LIMIT = SizeLimit(1000, "RUNKERNEL_MAX_STEP_OUTPUT_BYTES")


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@given(json_values)
def test_the_measured_size_is_the_length_of_the_stored_text(value: Any) -> None:
    assert stored_size(value) == len(jsontext.dumps(value).encode("ascii"))


@given(json_values)
def test_stored_text_reads_back_as_the_same_value_with_the_same_types(value: Any) -> None:
    back = json.loads(jsontext.dumps(value))
    assert back == value
    # 1.0 stays 1.0, not 1; -0.0 is 0.0 (PostgreSQL's numeric has no negative zero)
    assert json.dumps(back) == json.dumps(_without_negative_zero(value))


def _without_negative_zero(value: Any) -> Any:
    if isinstance(value, float) and value == 0.0:
        return 0.0
    if isinstance(value, list):
        return [_without_negative_zero(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_negative_zero(v) for k, v in value.items()}
    return value


def test_negative_zero_is_written_as_zero_on_every_database() -> None:
    assert jsontext.dumps([-0.0, {"z": -0.0}, "-0.0"]) == '[0.0, {"z": 0.0}, "-0.0"]'


@pytest.mark.parametrize("number", [1e16, 1e308, -1.5e300, 1.7976931348623157e308, 2.5e22])
def test_a_float_with_a_positive_exponent_is_written_with_a_fraction_digit(number: float) -> None:
    """PostgreSQL's numeric prints 1e+16 as 10000000000000000, which reads back as an int;
    a fraction digit keeps it a float, and it parses back to the very same float."""
    written = jsontext.float_text(number)
    assert "e" not in written and written.endswith(".0")
    assert Decimal(written) == Decimal(repr(number))
    assert json.loads(written) == number and isinstance(json.loads(written), float)


def test_other_values_are_written_as_json_dumps_writes_them() -> None:
    # "e+" in a string sends it down the careful path, which must agree with json.dumps
    value = {"a": [1, 0.1, 1e-7, 10**30, "x e+5", None, True, "é"], 2: "key", None: 0}
    assert jsontext.dumps(value) == json.dumps(value)
    assert jsontext.dumps({"f": 1e20}) == '{"f": 100000000000000000000.0}'
    assert jsontext.dumps({"t": (1e20,), 1.5: 2}) == '{"t": [100000000000000000000.0], "1.5": 2}'


def test_depth_is_limited_even_for_a_value_seen_before_at_a_shallower_place() -> None:
    shared = nested(MAX_DEPTH - 1)
    check_storable(shared)
    check_storable([shared])  # exactly at the limit
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH}"):
        check_storable({"ok": shared, "deeper": [[shared]]})


def test_a_cycle_is_refused_not_followed() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        check_storable(loop)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"raw", "a bytes is not a JSON value"),
        ({1, 2}, "a set is not a JSON value"),
        (datetime(2026, 1, 1, tzinfo=UTC), "a datetime is not a JSON value"),
        (object(), "a object is not a JSON value"),
        (Decimal("1.5"), "a Decimal is not a JSON value"),
        (float("nan"), "NaN and Infinity"),
        (float("-inf"), "NaN and Infinity"),
        ("a\x00b", "NUL"),
        ("\ud800", "lone surrogate"),
        ({1: "a"}, "keys must be strings, not int"),
        ({"\ud800": 1}, "lone surrogate"),
        (10**5000, "integers are limited to 4300 digits"),
        (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_what_cannot_be_stored_is_named_with_its_place(value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        check_storable({"out": [value]})
    assert str(info.value).startswith("out[0]")
    stored, reason = bounded(value, "output", LIMIT)
    assert stored == omitted(reason or "") and reason is not None
    assert reason.startswith("output cannot be stored (output") and problem in reason


def test_a_value_over_the_limit_is_replaced_by_a_marker_naming_the_limit() -> None:
    assert bounded("x" * 990, "output", LIMIT) == ("x" * 990, None)
    stored, reason = bounded("x" * 1000, "output", LIMIT)
    assert reason == (
        "output is over the limit of 1000 bytes (set by RUNKERNEL_MAX_STEP_OUTPUT_BYTES)"
    )
    assert stored == {"omitted": reason}


def test_many_references_to_one_large_value_are_measured_without_walking_each() -> None:
    """A template copying one 100 kB output into 100 000 places is 10 GB stored; the walk
    stops at the limit and visits the shared value once."""
    big = {"body": "y" * 100_000, "items": list(range(1000))}
    copies = [big] * 100_000
    with pytest.raises(TooLarge):
        stored_size(copies, limit=1_000_000)
    assert stored_size(copies[:3]) == 3 * stored_size(big) + 2 + 2 * 2


def test_printable_escapes_what_a_database_or_encoder_would_refuse() -> None:
    assert printable("a\x00b\ud800c") == "a\\x00b\\ud800c"
    assert printable("z" * 50, max_chars=10) == "z" * 9 + "…"
    check_storable(printable("\x00\udfff" * 3))


@pytest.mark.parametrize(
    "text",
    [
        "[NaN]",
        '{"x": Infinity}',
        '"\\u0000"',
        '"\\ud800"',
        '"\\uDFFF"',
        "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2),
    ],
)
def test_a_stored_text_that_may_hold_an_unstorable_value_is_checked_in_full(text: str) -> None:
    assert codec._may_be_unstorable(text)
    assert set(codec.loads(text)) == {"omitted"}


@given(json_values)
def test_a_text_the_read_fast_path_lets_through_is_storable(value: Any) -> None:
    text = jsontext.dumps(value)
    if not codec._may_be_unstorable(text):
        check_storable(json.loads(text))
    assert codec.loads(text) == json.loads(text)
