"""The skill registry: names mapped to callables, with optional submit-time validators.

A skill function is ``fn(params: dict, context: SkillContext)``. It may return a
:class:`SkillResult`, or any other value, which becomes that result's ``output``. A validator
is ``validate(params)``; it raises :class:`PlanValidationError` and must accept any value that
is a ``{{…}}`` template string, since templates are resolved only at run time.

Whatever a skill or its validator raises ends here: a validator's exception of any kind is
a ``PlanValidationError`` (a 422 at submit), a skill's is a failed step, and so is a result
whose usage or cost is not a count a run can add up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from runkernel.domain.skills import Lowered, SkillContext, SkillResult, Usage
from runkernel.errors import PlanValidationError, SkillError

SkillFn = Callable[[dict[str, Any], SkillContext], Any]
Validator = Callable[[Mapping[str, Any]], None]
# The most one call with these (rendered) params may cost, in micros.
Estimator = Callable[[Mapping[str, Any]], int]
# The params lowered so one call costs at most this many micros, or None (on_budget cap).
Lowerer = Callable[[Mapping[str, Any], int], Lowered | None]
F = TypeVar("F", bound=SkillFn)

# Per call; a run sums up to max_plan_steps of them in signed 64-bit columns.
MAX_COUNT = 2**53


@dataclass(frozen=True, slots=True)
class _Entry:
    fn: SkillFn
    validate: Validator | None
    description: str
    estimate: Estimator | None = None
    lower: Lowerer | None = None


class SkillRegistry:
    """Implements the ``SkillCatalog`` port."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._closers: list[Callable[[], None]] = []

    def register(
        self,
        name: str,
        fn: SkillFn,
        *,
        validate: Validator | None = None,
        description: str = "",
        estimate: Estimator | None = None,
        lower: Lowerer | None = None,
    ) -> None:
        if not name:
            raise ValueError("a skill needs a name")
        if name in self._entries:
            raise ValueError(f"skill {name!r} is already registered")
        self._entries[name] = _Entry(fn, validate, description, estimate, lower)

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
            # A validator tripping over odd input (urlsplit's ValueError on "http://[::1",
            # a RecursionError compiling a deeply nested expression) is the input's fault.
            except Exception as exc:
                raise PlanValidationError(
                    f"{name}: params cannot be checked: {type(exc).__name__}: {exc}"
                ) from exc

    def estimate(self, name: str, params: Mapping[str, Any]) -> int | None:
        entry = self._entries.get(name)
        if entry is None or entry.estimate is None:
            return None
        try:
            micros = entry.estimate(params)
        # Params the skill cannot price are params it refuses at the call, before any cost.
        except Exception:  # noqa: BLE001
            return 0
        return micros if isinstance(micros, int) and 0 <= micros <= MAX_COUNT else None

    def lower(self, name: str, params: Mapping[str, Any], per_call_micros: int) -> Lowered | None:
        entry = self._entries.get(name)
        if entry is None or entry.lower is None:
            return None
        try:
            return entry.lower(params, per_call_micros)
        # Params the skill cannot price cannot be lowered either; the step terminates.
        except Exception:  # noqa: BLE001
            return None

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
        if not isinstance(value, SkillResult):
            return SkillResult(output=value)
        problem = _bad_result(value)
        return value if problem is None else SkillResult(error=f"{name} returned {problem}")

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the registry is closed (e.g. to close a shared HTTP client)."""
        self._closers.append(closer)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()


def _bad_result(result: SkillResult) -> str | None:
    """Why ``result`` cannot be accounted for, or None."""
    usage = result.usage
    if not isinstance(usage, Usage):
        return f"usage that is not a Usage: {usage!r}"
    counts = {
        "usage.input_tokens": usage.input_tokens,
        "usage.output_tokens": usage.output_tokens,
        "cost_micros": result.cost_micros,
    }
    for field, count in counts.items():
        if not _is_count(count):
            return f"{field} {count!r}; it must be an integer from 0 to {MAX_COUNT}"
    if result.error is not None and not isinstance(result.error, str):
        return f"an error that is not text: {result.error!r}"
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
