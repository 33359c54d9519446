"""Filters and cursor pages shared by the list endpoints' services."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TypeVar

from runkernel.errors import QueryValidationError

MAX_PAGE = 500
T = TypeVar("T")


def check_choice(name: str, value: str | None, choices: type[StrEnum]) -> None:
    """A filter naming no member would silently match nothing: refuse it instead."""
    if value is not None and value not in {c.value for c in choices}:
        allowed = ", ".join(c.value for c in choices)
        raise QueryValidationError(f"unknown {name} {value!r}; one of {allowed}")


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise QueryValidationError(f"limit must be from 1 to {MAX_PAGE}")


def page(found: Sequence[T], limit: int, *, key: Callable[[T], str]) -> tuple[list[T], str | None]:
    """Cut a ``limit + 1`` fetch to ``limit``; the extra row says whether there is more,
    and the last row's key is where the next page starts."""
    rows = list(found[:limit])
    more = len(found) > limit
    return rows, (key(rows[-1]) if more and rows else None)
