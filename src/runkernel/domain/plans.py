"""Plans: ordered steps of skills, and the ``{{steps.<id>.output…}}`` templates between them.

A param that is exactly one template takes the referenced value with its JSON type; a
template inside longer text renders as text (JSON for non-strings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runkernel.domain.money import micros_to_usd, usd_to_micros
from runkernel.domain.numbers import as_integer
from runkernel.errors import PlanValidationError

STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}$")
TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
WHOLE_TEMPLATE = re.compile(r"^\s*\{\{([^{}]*)\}\}\s*$", re.DOTALL)
MAX_RETRIES = 10
STEP_FIELDS = frozenset(
    {"step_id", "skill", "params", "on_error", "retries", "output_key", "estimated_cost_usd"}
)


class OnError(StrEnum):
    ABORT = "abort"
    CONTINUE = "continue"


@dataclass(frozen=True, slots=True)
class Step:
    step_id: str
    skill: str
    params: Mapping[str, Any]
    on_error: OnError = OnError.ABORT
    retries: int = 0
    output_key: str | None = None
    # What one call of the skill may cost at most, as the plan's author declared it; what
    # the worker reserves for a skill that cannot estimate its own cost (``llm.chat`` can).
    estimated_cost_micros: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "step_id": self.step_id,
            "skill": self.skill,
            "params": dict(self.params),
            "on_error": self.on_error.value,
            "retries": self.retries,
            "output_key": self.output_key,
        }
        if self.estimated_cost_micros is not None:
            out["estimated_cost_usd"] = micros_to_usd(self.estimated_cost_micros)
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """``steps.<step_id>.output`` followed by a path of keys and list indices."""

    step_id: str
    path: tuple[str, ...]
    text: str


def parse_template(expr: str) -> TemplateRef:
    parts = expr.strip().split(".")
    if len(parts) < 3 or parts[0] != "steps" or parts[2] != "output" or not all(parts):
        raise PlanValidationError(
            f"bad template {{{{{expr.strip()}}}}}: expected {{{{steps.<step_id>.output[.key…]}}}}",
            code="invalid_template",
        )
    return TemplateRef(parts[1], tuple(parts[3:]), expr.strip())


def templates_in(value: Any) -> list[TemplateRef]:
    """Every template in a params value (strings, lists and dicts, recursively)."""
    if isinstance(value, str):
        if value.count("{{") != value.count("}}"):
            raise PlanValidationError(
                f"unbalanced template braces in {value!r}", code="invalid_template"
            )
        return [parse_template(m) for m in TEMPLATE.findall(value)]
    if isinstance(value, Mapping):
        return [ref for v in value.values() for ref in templates_in(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in templates_in(v)]
    return []


def parse_plan(
    raw: Any,
    *,
    max_steps: int,
    validate_skill: Callable[[str, Mapping[str, Any]], None],
) -> Plan:
    """Validate a plan document and return the :class:`Plan`; raise ``PlanValidationError``
    with a message naming the offending step."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("steps"), list):
        raise PlanValidationError('a plan is an object {"steps": [...]}')
    unknown = sorted(str(key) for key in raw if key != "steps")
    if unknown:
        # Dropping a key silently would run a plan other than the one its author wrote.
        raise PlanValidationError(f"plan: unknown fields {unknown}; a plan has only 'steps'")
    raw_steps: list[Any] = raw["steps"]
    if not raw_steps:
        raise PlanValidationError("a plan needs at least one step")
    if len(raw_steps) > max_steps:
        raise PlanValidationError(
            f"plan has {len(raw_steps)} steps; the limit is {max_steps}", code="plan_too_large"
        )
    seen: set[str] = set()
    output_keys: dict[str, str] = {}
    steps: list[Step] = []
    for index, item in enumerate(raw_steps):
        step = _parse_step(index, item, seen)
        where = f"step {step.step_id!r}"
        if step.output_key is not None:
            # The run's output maps each key to one step's output: a second step would
            # silently replace the first one's.
            first = output_keys.setdefault(step.output_key, step.step_id)
            if first != step.step_id:
                raise PlanValidationError(
                    f"{where}: output_key {step.output_key!r} is already the output_key of "
                    f"step {first!r}"
                )
        for ref in templates_in(step.params):
            if ref.step_id not in seen:
                raise PlanValidationError(
                    f"{where}: template {{{{{ref.text}}}}} refers to {ref.step_id!r}, "
                    "which is not an earlier step",
                    code="invalid_template",
                )
        try:
            validate_skill(step.skill, step.params)
        except PlanValidationError as exc:
            raise PlanValidationError(f"{where}: {exc.message}", code=exc.code) from exc
        seen.add(step.step_id)
        steps.append(step)
    return Plan(tuple(steps))


def _parse_step(index: int, item: Any, seen: set[str]) -> Step:
    if not isinstance(item, Mapping):
        raise PlanValidationError(f"step #{index} must be an object")
    step_id = item.get("step_id", f"step{index}")
    if not isinstance(step_id, str) or not STEP_ID.fullmatch(step_id):
        raise PlanValidationError(
            f"step #{index}: step_id must match {STEP_ID.pattern} (got {step_id!r})"
        )
    if step_id in seen:
        raise PlanValidationError(f"step #{index}: duplicate step_id {step_id!r}")
    skill = item.get("skill")
    if not isinstance(skill, str) or not skill:
        raise PlanValidationError(f"step {step_id!r}: 'skill' must be a non-empty string")
    params = item.get("params", {})
    if not isinstance(params, Mapping):
        raise PlanValidationError(f"step {step_id!r}: 'params' must be an object")
    on_error = item.get("on_error", "abort")
    if on_error not in ("abort", "continue"):
        raise PlanValidationError(f"step {step_id!r}: on_error must be 'abort' or 'continue'")
    retries = as_integer(item.get("retries", 0))
    if retries is None or not 0 <= retries <= MAX_RETRIES:
        raise PlanValidationError(
            f"step {step_id!r}: retries must be an integer from 0 to {MAX_RETRIES}"
        )
    output_key = item.get("output_key")
    if output_key is not None and (not isinstance(output_key, str) or not output_key):
        raise PlanValidationError(f"step {step_id!r}: output_key must be a non-empty string")
    estimate = _estimated_cost(step_id, item.get("estimated_cost_usd"))
    unknown = set(item) - STEP_FIELDS
    if unknown:
        raise PlanValidationError(f"step {step_id!r}: unknown fields {sorted(unknown)}")
    return Step(step_id, skill, dict(params), OnError(on_error), retries, output_key, estimate)


def _estimated_cost(step_id: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanValidationError(f"step {step_id!r}: estimated_cost_usd must be a number")
    try:
        micros = usd_to_micros(value)
    except ValueError as exc:
        raise PlanValidationError(f"step {step_id!r}: estimated_cost_usd: {exc}") from None
    if micros < 0:
        raise PlanValidationError(f"step {step_id!r}: estimated_cost_usd must be >= 0")
    return micros


def _stored_estimate(value: Any) -> int | None:
    return None if value is None else usd_to_micros(value)


def plan_from_dict(raw: Mapping[str, Any]) -> Plan:
    """Rebuild a stored (already validated) plan."""
    return Plan(
        tuple(
            Step(
                s["step_id"],
                s["skill"],
                s.get("params", {}),
                OnError(s.get("on_error", "abort")),
                s.get("retries", 0),
                s.get("output_key"),
                _stored_estimate(s.get("estimated_cost_usd")),
            )
            for s in raw["steps"]
        )
    )


class TemplateError(Exception):
    """A template that cannot be resolved at run time (a failed step's error)."""


class RenderTooLarge(TemplateError):
    """Templates inside text would render more characters than the step may take."""


def resolve(ref: TemplateRef, outputs: Mapping[str, Any]) -> Any:
    if ref.step_id not in outputs:
        raise TemplateError(f"{{{{{ref.text}}}}}: step {ref.step_id!r} has no output")
    value = outputs[ref.step_id]
    for key in ref.path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif (
            isinstance(value, list)
            and key.lstrip("-").isdigit()
            and -len(value) <= int(key) < len(value)
        ):
            value = value[int(key)]
        else:
            raise TemplateError(f"{{{{{ref.text}}}}}: no {key!r} in the output")
    return value


def render(value: Any, outputs: Mapping[str, Any], *, max_chars: int | None = None) -> Any:
    """Substitute templates in ``value`` with earlier step outputs.

    A whole-string template shares the referenced value, but one inside text copies it;
    with ``max_chars`` those copies stop (``RenderTooLarge``) once they add up to more,
    so a plan repeating a large output cannot build a huge input before it is measured.
    """
    copied = 0

    def as_text(match: re.Match[str]) -> str:
        nonlocal copied
        text = _as_text(resolve(parse_template(match.group(1)), outputs))
        copied += len(text)
        if max_chars is not None and copied > max_chars:
            raise RenderTooLarge(f"templates in text render more than {max_chars} characters")
        return text

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            whole = WHOLE_TEMPLATE.match(item)
            if whole:
                return resolve(parse_template(whole.group(1)), outputs)
            return TEMPLATE.sub(as_text, item)
        if isinstance(item, Mapping):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:  # not JSON, or nested too deep
        raise TemplateError(f"an output cannot be written as text: {exc}") from exc
