"""Param checks shared by the built-in skills.

Each built-in has one ``check_params(params, *, templates=True)``. At submit time
(``templates=True``) a value that is a ``{{…}}`` template string is accepted unchecked, since
it is known only at run time. At call time the same check runs with ``templates=False`` on
the resolved params, so a template that resolved to a wrong type fails the step clearly.
Messages are bare; the registry or :func:`check_at_call` prefixes the skill name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from runkernel.errors import PlanValidationError, SkillError

Checker = Callable[..., None]


def is_template(value: object) -> bool:
    return isinstance(value, str) and "{{" in value


def skip(value: object, templates: bool) -> bool:
    """True when ``value`` cannot be checked yet because it is a template."""
    return templates and is_template(value)


def fail(message: str) -> NoReturn:
    raise PlanValidationError(message)


def check_keys(params: Mapping[str, Any], required: Iterable[str], optional: Iterable[str]) -> None:
    required, allowed = set(required), set(required) | set(optional)
    missing = sorted(required - params.keys())
    if missing:
        fail(f"missing param(s): {', '.join(missing)}")
    # An unknown key is nearly always a typo ("max_token"); silently ignoring it would run
    # the step with a default the author did not mean.
    unknown = sorted(str(key) for key in params.keys() - allowed)
    if unknown:
        fail(f"unknown param(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def check_number(
    name: str, value: object, *, low: float, high: float, integer: bool, templates: bool
) -> None:
    """Bounds are inclusive; ``True``/``False`` are not numbers here, whatever Python says."""
    if skip(value, templates):
        return
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (isinstance(value, int) or not integer)
        and low <= value <= high
    ):
        return
    kind = "an integer" if integer else "a number"
    fail(f"{name} must be {kind} in [{low:g}, {high:g}], got {value!r}")


def check_at_call(skill: str, check: Checker, params: Mapping[str, Any]) -> None:
    """Run ``check`` on resolved params; a failure is a failed step (``SkillError``)."""
    try:
        check(params, templates=False)
    except PlanValidationError as exc:
        raise SkillError(f"{skill}: {exc.message}") from exc
