"""What may be stored, and how big it is once stored.

Python's ``json`` accepts ``NaN``/``Infinity`` and lone UTF-16 surrogates (``"\\ud800"``),
and PostgreSQL refuses NUL characters in text and JSONB; each would otherwise surface
as a database error (a 500) long after validation. Deep nesting is capped so no later
recursive walk (``json.dumps``, template search, response serialisation) can hit a
recursion limit. Only JSON values are storable: ``dict`` with string keys, ``list`` (or
``tuple``), ``str``, ``int``, ``float``, ``bool`` and ``None``.

:func:`bounded` is the one check every value a run stores passes (a step's rendered
input and output, the run's output): over its size limit or unstorable, the value is
replaced by a small :func:`omitted` marker and the caller is told why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from runkernel.domain.jsontext import float_text

MAX_DEPTH = 64
# Python refuses to print longer integers (sys.get_int_max_str_digits), so neither
# json.dumps nor the API could write them back.
MAX_INT_DIGITS = 4300
_MEMO_MIN_CHARS = 256  # strings at least this long are measured once per object


@dataclass(frozen=True, slots=True)
class SizeLimit:
    """A byte limit on a stored value, and the setting that raises it (named in errors)."""

    max_bytes: int
    setting: str


class TooLarge(ValueError):
    """The value is over the size limit (the walk stopped there)."""


def check_storable(value: Any) -> None:
    """Raise ``ValueError`` naming the first place in ``value`` that cannot be stored."""
    stored_size(value)


def stored_size(value: Any, *, limit: int | None = None, name: str = "") -> int:
    """The size in bytes of ``value`` as stored JSON text (:func:`jsontext.dumps`).

    Raise ``ValueError`` naming the first place that cannot be stored (a path below
    ``name``; a request body's fields go unprefixed), or, with ``limit``,
    :class:`TooLarge` as soon as the size is known to be over it. An object referenced
    many times (a template copying one output into many places) is walked once."""
    walk = _Walk(limit, paths=False)
    try:
        walk.visit(value, name, 0)
    except _Unstorable:
        # Paths are built only to name the place: walk again with them (same value, same
        # first failure), so the common case of a storable value builds no strings.
        where, problem = _first_problem(value, limit, name)
        # The path may quote a bad key; escape it, since pydantic-core (Rust) cannot even
        # carry a message holding a lone surrogate.
        raise ValueError(f"{printable(where) or 'body'}: {problem}") from None
    return walk.total


def omitted(reason: str) -> dict[str, str]:
    """What is stored in place of a value that could not be: small, and says why."""
    return {"omitted": reason}


def bounded(value: Any, what: str, limit: SizeLimit) -> tuple[Any, str | None]:
    """``(value, None)`` when ``value`` can be stored within ``limit``, else
    ``(marker, reason)``; ``what`` names the value in the reason (``"output"``)."""
    try:
        stored_size(value, limit=limit.max_bytes, name=what)
    except TooLarge:
        reason = too_large(what, limit)
    except ValueError as exc:
        reason = f"{what} cannot be stored ({exc})"
    else:
        return value, None
    return omitted(reason), reason


def too_large(what: str, limit: SizeLimit) -> str:
    return f"{what} is over the limit of {limit.max_bytes} bytes (set by {limit.setting})"


def printable(text: str, *, max_chars: int | None = None) -> str:
    """``text`` made storable and printable: lone surrogates escaped, NUL shown as
    ``\\x00``, and cut to ``max_chars`` (for error messages quoting what a skill saw)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if max_chars is not None and len(text) > max_chars:
        return text[: max_chars - 1] + "…"
    return text


class _Unstorable(Exception):
    pass


def _first_problem(value: Any, limit: int | None, name: str) -> tuple[str, str]:
    try:
        _Walk(limit, paths=True).visit(value, name, 0)
    except _Unstorable as exc:
        where, problem = exc.args
        return str(where), str(problem)
    raise AssertionError("a value refused without paths must be refused with them")


class _Walk:
    """Adds up the stored size while checking each value; the recursion is bounded by
    ``MAX_DEPTH``, so no input can exhaust the stack."""

    def __init__(self, limit: int | None, *, paths: bool) -> None:
        self.limit = limit
        self.paths = paths
        self.total = 0
        # id -> (size, height) of containers and long strings already measured
        self._seen: dict[int, tuple[int, int]] = {}

    def add(self, size: int) -> None:
        self.total += size
        if self.limit is not None and self.total > self.limit:
            raise TooLarge(f"over {self.limit} bytes")

    def visit(self, item: Any, where: str, depth: int) -> int:
        """Measure ``item``; return its height (0 for a scalar)."""
        if depth > MAX_DEPTH:
            raise _Unstorable(where, f"nested deeper than {MAX_DEPTH} levels")
        if item is None or isinstance(item, bool):
            self.add(4 if item is not False else 5)
            return 0
        if isinstance(item, int):
            self.add(_int_size(item, where))
            return 0
        if isinstance(item, float):
            if not math.isfinite(item):
                raise _Unstorable(where, "NaN and Infinity are not JSON numbers")
            self.add(len(float_text(item)))
            return 0
        if not isinstance(item, str | dict | list | tuple):
            raise _Unstorable(where, f"a {type(item).__name__} is not a JSON value")
        known = self._seen.get(id(item))
        if known is not None:
            size, height = known
            if depth + height > MAX_DEPTH:
                raise _Unstorable(where, f"nested deeper than {MAX_DEPTH} levels")
            self.add(size)
            return height
        before = self.total
        height = self._container(item, where, depth) if not isinstance(item, str) else 0
        if isinstance(item, str):
            _check_text(item, where)
            self.add(len(json.dumps(item)))
            if len(item) < _MEMO_MIN_CHARS:
                return 0
        self._seen[id(item)] = (self.total - before, height)
        return height

    def _container(
        self, item: dict[Any, Any] | list[Any] | tuple[Any, ...], where: str, depth: int
    ) -> int:
        self.add(2 + 2 * max(len(item) - 1, 0))  # brackets and ", " separators
        height = 0
        if isinstance(item, dict):
            paths = self.paths
            for key, child in item.items():
                path = (f"{where}.{key}" if where else str(key)) if paths else where
                if not isinstance(key, str):
                    raise _Unstorable(path, f"keys must be strings, not {type(key).__name__}")
                _check_text(key, path)
                self.add(len(json.dumps(key)) + 2)  # the key and ": "
                height = max(height, 1 + self.visit(child, path, depth + 1))
        else:
            for i, child in enumerate(item):
                path = f"{where}[{i}]" if self.paths else where
                height = max(height, 1 + self.visit(child, path, depth + 1))
        return height


def _int_size(value: int, where: str) -> int:
    try:
        return len(int.__repr__(value))
    except ValueError:  # more digits than Python will print
        raise _Unstorable(where, f"integers are limited to {MAX_INT_DIGITS} digits") from None


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise _Unstorable(where, "text must not contain NUL (\\u0000) characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Unstorable(where, "text is not valid Unicode (a lone surrogate)") from None
