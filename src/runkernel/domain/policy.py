"""Policy rules and the evaluation every finished run gets.

Outcome of :func:`evaluate`: any BLOCK violation → VIOLATION; else any WARN violation →
WARN; else PASS. AUDIT violations are recorded in ``violations`` but leave the outcome
alone: AUDIT is how a tenant trials a rule silently before it warns or blocks. DISABLED
rules are listed among the rules evaluated (the record shows they existed) but never
violate. RETIRED rules and rules scoped to another agent are not listed at all.

Limits are maxima: using exactly the limit passes. ``require_approval`` is enforced before
the step (the mid-run checker pauses the run); afterwards there is nothing left to judge,
so it never violates here.

A rule is judged on an :class:`~runkernel.domain.exposure.Exposure`: what a run did, or,
for a run that has not started, the most its plan and budget allow. That is how the same
:func:`evaluate` checks a plan at submission (:func:`check_plan`: BLOCK violations refuse
the run) and judges the run at completion.

Params are stored normalized (see :func:`validate_rule_params`); money is integer micros
like everywhere inside runkernel, so ``{"max_cost_usd": 0.1}`` is stored as
``{"max_cost_micros": 100000}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from runkernel.domain.exposure import Exposure, exposure_of
from runkernel.domain.money import usd_to_micros
from runkernel.domain.numbers import as_integer
from runkernel.domain.outcomes import RunOutcome
from runkernel.errors import ConflictError, InvariantError, ValidationError

E = TypeVar("E", bound=StrEnum)


class RuleKind(StrEnum):
    MAX_COST = "max_cost"
    MAX_TOKENS = "max_tokens"
    MAX_STEPS = "max_steps"
    MAX_DURATION = "max_duration"
    ALLOWED_SKILLS = "allowed_skills"
    DENIED_SKILLS = "denied_skills"
    REQUIRE_APPROVAL = "require_approval"


class Enforcement(StrEnum):
    BLOCK = "BLOCK"
    WARN = "WARN"
    AUDIT = "AUDIT"
    DISABLED = "DISABLED"


class Scope(StrEnum):
    TENANT = "tenant"
    AGENT = "agent"


class RuleStatus(StrEnum):
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"


class Outcome(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    VIOLATION = "VIOLATION"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One row of ``policy_rules``; ``agent_id`` is set exactly when ``scope`` is agent."""

    id: str
    tenant_id: str
    agent_id: str | None
    kind: RuleKind
    params: Mapping[str, Any]
    enforcement: Enforcement
    scope: Scope
    status: RuleStatus
    version: int
    created_at_ms: int
    updated_at_ms: int

    def __post_init__(self) -> None:
        if (self.scope is Scope.AGENT) != (self.agent_id is not None):
            raise ValidationError("an agent-scoped rule needs agent_id; a tenant-scoped one none")


class RuleRef(NamedTuple):
    """Which rule, at which version, took part in an evaluation."""

    id: str
    version: int
    kind: RuleKind
    enforcement: Enforcement

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "version": self.version,
            "kind": self.kind.value,
            "enforcement": self.enforcement.value,
        }


@dataclass(frozen=True, slots=True)
class Violation:
    rule_id: str
    rule_version: int
    kind: RuleKind
    enforcement: Enforcement
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "kind": self.kind.value,
            "enforcement": self.enforcement.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    outcome: Outcome
    violations: tuple[Violation, ...]
    rules: tuple[RuleRef, ...]

    def to_dict(self) -> dict[str, object]:
        """The ``outcome``, ``violations`` and ``rules`` columns of ``policy_evaluations``."""
        return {
            "outcome": self.outcome.value,
            "violations": [v.to_dict() for v in self.violations],
            "rules": [r.to_dict() for r in self.rules],
        }


_LIMIT_KEYS = {
    RuleKind.MAX_TOKENS: "max_tokens",
    RuleKind.MAX_STEPS: "max_steps",
    RuleKind.MAX_DURATION: "max_duration_s",
}


def validate_rule_params(kind: RuleKind, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` for ``kind`` and return them normalized; raise ``ValidationError``.

    max_cost: exactly one of ``max_cost_usd`` (number ≥ 0) or ``max_cost_micros`` (int ≥ 0),
    stored as ``max_cost_micros``; max_tokens / max_steps: an int ≥ 0; max_duration:
    ``max_duration_s``, a number ≥ 0; the skill kinds: ``skills``, a non-empty list of names.
    require_approval also takes, to match only some calls of those skills: ``params``, an
    object of param names to the values they must equal (``{"method": "POST"}`` for
    ``http.request``), and ``url_prefix``, a string the step's ``url`` param must start with
    (``webhook.send``, ``http.request``); a step matches when all given conditions hold.
    """
    if not isinstance(params, Mapping):
        raise ValidationError(f"{kind.value} params must be an object")
    if kind is RuleKind.MAX_COST:
        _only(kind, params, {"max_cost_usd", "max_cost_micros"})
        given = {"max_cost_usd", "max_cost_micros"} & set(params)
        if len(given) != 1:
            raise ValidationError("max_cost needs exactly one of max_cost_usd or max_cost_micros")
        if "max_cost_usd" in params:
            usd = _number(kind, "max_cost_usd", params["max_cost_usd"])
            try:
                return {"max_cost_micros": usd_to_micros(usd)}
            except ValueError as exc:
                raise ValidationError(f"max_cost: max_cost_usd: {exc}") from exc
        return {"max_cost_micros": _number(kind, "max_cost_micros", params["max_cost_micros"], int)}
    if kind in _LIMIT_KEYS:
        key = _LIMIT_KEYS[kind]
        _only(kind, params, {key})
        numeric = float if kind is RuleKind.MAX_DURATION else int
        return {key: _number(kind, key, params.get(key), numeric)}
    if kind is RuleKind.REQUIRE_APPROVAL:
        _only(kind, params, {"skills", "params", "url_prefix"})
        return {**_skills(kind, params), **_approval_match(params)}
    _only(kind, params, {"skills"})
    return _skills(kind, params)


def _skills(kind: RuleKind, params: Mapping[str, Any]) -> dict[str, Any]:
    skills = params.get("skills")
    if not isinstance(skills, list) or not skills:
        raise ValidationError(f"{kind.value} needs 'skills': a non-empty list of skill names")
    if not all(isinstance(s, str) and s.strip() for s in skills):
        raise ValidationError(f"{kind.value}: every skill must be a non-empty string")
    return {"skills": list(dict.fromkeys(skills))}


def _approval_match(params: Mapping[str, Any]) -> dict[str, Any]:
    """The optional ``params`` and ``url_prefix`` conditions of a require_approval rule."""
    kept: dict[str, Any] = {}
    if "params" in params:
        match = params["params"]
        if not isinstance(match, Mapping) or not match:
            raise ValidationError("require_approval: 'params' must be a non-empty object")
        for name, value in match.items():
            if not isinstance(name, str) or not name.strip():
                raise ValidationError("require_approval: every param name must be a string")
            if value is not None and not isinstance(value, str | int | float | bool):
                raise ValidationError(
                    f"require_approval: param {name!r} must match a string, number, "
                    f"boolean or null, got {type(value).__name__}"
                )
        kept["params"] = dict(match)
    if "url_prefix" in params:
        prefix = params["url_prefix"]
        if not isinstance(prefix, str) or not prefix.strip():
            raise ValidationError("require_approval: 'url_prefix' must be a non-empty string")
        kept["url_prefix"] = prefix
    return kept


def applies(rule: PolicyRule, tenant_id: str, agent_id: str) -> bool:
    """ACTIVE, and tenant-scoped or scoped to this agent. Another tenant's rule is a bug."""
    if rule.tenant_id != tenant_id:
        raise InvariantError(f"rule {rule.id} belongs to another tenant than run's {tenant_id}")
    if rule.status is not RuleStatus.ACTIVE:
        return False
    return rule.scope is Scope.TENANT or rule.agent_id == agent_id


def evaluate(rules: Iterable[PolicyRule], outcome: RunOutcome) -> Evaluation:
    """Judge a run against the tenant's rules (see the module doc for the mapping)."""
    in_scope = [r for r in rules if applies(r, outcome.tenant_id, outcome.agent_id)]
    exposure = exposure_of(outcome)
    violations = tuple(v for r in in_scope for v in _judge(r, exposure))
    enforced = {v.enforcement for v in violations}
    if Enforcement.BLOCK in enforced:
        result = Outcome.VIOLATION
    elif Enforcement.WARN in enforced:
        result = Outcome.WARN
    else:
        result = Outcome.PASS
    refs = tuple(RuleRef(r.id, r.version, r.kind, r.enforcement) for r in in_scope)
    return Evaluation(result, violations, refs)


@dataclass(frozen=True, slots=True)
class PlanCheck:
    """The verdict at submission (T0): BLOCK violations refuse the run; WARN and AUDIT
    ones are noted on it and the run goes ahead."""

    evaluation: Evaluation

    @property
    def refused(self) -> bool:
        return self.evaluation.outcome is Outcome.VIOLATION

    @property
    def blocking(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.evaluation.violations if v.enforcement is Enforcement.BLOCK)

    @property
    def noted(self) -> tuple[Violation, ...]:
        return tuple(
            v for v in self.evaluation.violations if v.enforcement is not Enforcement.BLOCK
        )


def check_plan(rules: Iterable[PolicyRule], outcome: RunOutcome) -> PlanCheck:
    """Judge a run that has not started (its plan and budget) by :func:`evaluate`."""
    if outcome.started_at_ms is not None:
        raise InvariantError(f"run {outcome.run_id} has started: its plan was checked at T0")
    return PlanCheck(evaluate(rules, outcome))


def describe(violations: Iterable[Violation]) -> str:
    """``rule pol_1 v2 (denied_skills, BLOCK): skills denied: shell; …``"""
    return "; ".join(
        f"rule {v.rule_id} v{v.rule_version} ({v.kind.value}, {v.enforcement.value}): {v.message}"
        for v in violations
    )


_MUTABLE = frozenset({"params", "enforcement", "status", "scope", "agent_id"})


def bump(rule: PolicyRule, changes: Mapping[str, Any], now_ms: int) -> PolicyRule:
    """The rule with ``changes`` applied and version + 1. Every change bumps, even one that
    sets a value it already had: the version counts edits, so evaluations can cite them."""
    if rule.status is RuleStatus.RETIRED:
        raise ConflictError(f"rule {rule.id} is retired; create a new rule", code="rule_retired")
    if not changes:
        raise ValidationError("no changes given")
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown))} of a rule")
    fields = dict(changes)
    if "params" in fields:
        fields["params"] = _params_of(rule, fields["params"])
    for name, enum in (("enforcement", Enforcement), ("status", RuleStatus), ("scope", Scope)):
        if name in fields:
            fields[name] = _member(enum, name, fields[name])
    return replace(rule, **fields, version=rule.version + 1, updated_at_ms=now_ms)


def _params_of(rule: PolicyRule, params: Any) -> dict[str, Any]:
    """``params`` checked for the rule's kind. Params that are valid, but for another kind,
    are a ``ConflictError``: the request is sound, the rule it names is of another kind."""
    try:
        return validate_rule_params(rule.kind, params)
    except ValidationError:
        for kind in RuleKind:
            if kind is not rule.kind and _valid_for(kind, params):
                raise ConflictError(
                    f"rule {rule.id} is a {rule.kind.value} rule; these are {kind.value} "
                    "params (a rule's kind is fixed: create a new rule instead)",
                    code="params_of_another_kind",
                ) from None
        raise


def _valid_for(kind: RuleKind, params: Any) -> bool:
    try:
        validate_rule_params(kind, params)
    except ValidationError:
        return False
    return True


def new_rule(
    *,
    id: str,
    tenant_id: str,
    kind: str,
    params: Mapping[str, Any],
    enforcement: str = Enforcement.BLOCK,
    scope: str = Scope.TENANT,
    agent_id: str | None = None,
    now_ms: int,
) -> PolicyRule:
    """A new ACTIVE rule at version 1, from caller input checked with clear messages."""
    rule_kind = _member(RuleKind, "kind", kind)
    return PolicyRule(
        id=id,
        tenant_id=tenant_id,
        agent_id=agent_id,
        kind=rule_kind,
        params=validate_rule_params(rule_kind, params),
        enforcement=_member(Enforcement, "enforcement", enforcement),
        scope=_member(Scope, "scope", scope),
        status=RuleStatus.ACTIVE,
        version=1,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )


def _judge(rule: PolicyRule, exposure: Exposure) -> list[Violation]:
    if rule.enforcement is Enforcement.DISABLED:
        return []
    if rule.kind in (RuleKind.ALLOWED_SKILLS, RuleKind.DENIED_SKILLS):
        return _skill_violations(rule, exposure.skills)
    message = _over_limit(rule, exposure)
    return [] if message is None else [_violation(rule, message)]


def _over_limit(rule: PolicyRule, exposure: Exposure) -> str | None:
    """Why the run went (or may go) past the rule's maximum, or None: within it, not known
    (a dimension its budget leaves open, the time of a run that never started), or a kind
    with no maximum (require_approval)."""
    p, planned = rule.params, exposure.planned
    cost, tokens, duration = exposure.cost_micros, exposure.tokens, exposure.duration_ms
    if rule.kind is RuleKind.MAX_COST and cost is not None and cost > p["max_cost_micros"]:
        used = f"a budget of {cost} micros" if planned else f"cost {cost} micros"
        return f"{used} is over the limit of {p['max_cost_micros']}"
    if rule.kind is RuleKind.MAX_TOKENS and tokens is not None and tokens > p["max_tokens"]:
        used = f"a budget of {tokens} tokens" if planned else f"{tokens} tokens"
        return f"{used} is over the limit of {p['max_tokens']}"
    if rule.kind is RuleKind.MAX_STEPS and exposure.steps > p["max_steps"]:
        steps = exposure.steps
        used = f"{steps} planned steps" if planned else f"{steps} steps"
        return f"{used} is over the limit of {p['max_steps']}"
    limit_ms = p.get("max_duration_s", 0) * 1000
    if rule.kind is RuleKind.MAX_DURATION and duration is not None and duration > limit_ms:
        used = f"a timeout of {duration} ms" if planned else f"run time {duration} ms"
        return f"{used} is over the limit of {p['max_duration_s']} s"
    return None


def _skill_violations(rule: PolicyRule, skills: tuple[str, ...]) -> list[Violation]:
    listed = set(rule.params.get("skills", ()))
    if rule.kind is RuleKind.DENIED_SKILLS:
        bad = [s for s in skills if s in listed]
        verb = "denied"
    else:
        bad = [s for s in skills if s not in listed]
        verb = "not allowed"
    if not bad:
        return []
    return [_violation(rule, f"skills {verb}: {', '.join(bad)}")]


def _violation(rule: PolicyRule, message: str) -> Violation:
    return Violation(rule.id, rule.version, rule.kind, rule.enforcement, message)


def _only(kind: RuleKind, params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed))
        raise ValidationError(f"{kind.value} does not take {', '.join(unknown)} (takes {takes})")


def _number(kind: RuleKind, key: str, value: Any, numeric: type = float) -> Any:
    """A finite number ≥ 0 (an integral one, as int, when ``numeric`` is int); bools are
    not numbers."""
    given = value
    if numeric is int:
        value = as_integer(value)
    ok_types = (int,) if numeric is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types) or not 0 <= value < math.inf:
        kind_of = "an integer" if numeric is int else "a finite number"
        raise ValidationError(f"{kind.value} needs {key!r}: {kind_of} ≥ 0, got {given!r}")
    return value


def _member(enum: type[E], field: str, value: Any) -> E:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise ValidationError(f"{field} must be one of {choices}, got {value!r}") from None
