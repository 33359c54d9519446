"""The skill registry: names mapped to callables, with optional submit-time validators.

A skill function is ``fn(params: dict, context: SkillContext)``. It may return a
:class:`SkillResult`, or any other value, which becomes that result's ``output``. A validator
is ``validate(params)``; it raises :class:`PlanValidationError` and must accept any value that
is a ``{{…}}`` template string, since templates are resolved only at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from runkernel.domain.skills import SkillContext, SkillResult
from runkernel.errors import PlanValidationError, SkillError

SkillFn = Callable[[dict[str, Any], SkillContext], Any]
Validator = Callable[[Mapping[str, Any]], None]
F = TypeVar("F", bound=SkillFn)


@dataclass(frozen=True, slots=True)
class _Entry:
    fn: SkillFn
    validate: Validator | None
    description: str


class SkillRegistry:
    """Implements the ``SkillCatalog`` port."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._closers: list[Callable[[], None]] = []

    def register(
        self, name: str, fn: SkillFn, *, validate: Validator | None = None, description: str = ""
    ) -> None:
        if not name:
            raise ValueError("a skill needs a name")
        if name in self._entries:
            raise ValueError(f"skill {name!r} is already registered")
        self._entries[name] = _Entry(fn, validate, description)

    def skill(
        self, name: str, *, validate: Validator | None = None, description: str = ""
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`; returns the function unchanged."""

        def decorator(fn: F) -> F:
            self.register(name, fn, validate=validate, description=description)
            return fn

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        return {name: self._entries[name].description for name in self.names()}

    def validate(self, name: str, params: Mapping[str, Any]) -> None:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise PlanValidationError(f"unknown skill {name!r}; known skills: {known}")
        if not isinstance(params, Mapping):
            raise PlanValidationError(f"{name}: params must be an object")
        if entry.validate is not None:
            try:
                entry.validate(params)
            except PlanValidationError as exc:
                raise PlanValidationError(f"{name}: {exc.message}") from exc

    def invoke(self, name: str, params: Mapping[str, Any], context: SkillContext) -> SkillResult:
        entry = self._entries.get(name)
        if entry is None:
            # Plans are validated at submit, so this means the worker was built with other
            # skills than the API; the step fails rather than the worker.
            return SkillResult(error=f"unknown skill {name!r}")
        try:
            value = entry.fn(dict(params), context)
        except SkillError as exc:
            return SkillResult(error=str(exc))
        # A user skill's bug must fail the step, never the worker running it; nothing but the
        # skill call itself is inside this try.
        except Exception as exc:  # noqa: BLE001
            return SkillResult(error=f"{type(exc).__name__}: {exc}")
        return value if isinstance(value, SkillResult) else SkillResult(output=value)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the registry is closed (e.g. to close a shared HTTP client)."""
        self._closers.append(closer)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()
