"""Bodies that create and change policy rules, with a JSON Schema that states the rules
``domain.policy`` checks: which params each kind takes, that ``agent_id`` is given exactly
when the scope is ``agent``, and that a change changes something.

The models stay loose (plain strings and objects) so the domain, which owns the rules,
checks them with its own messages; the schemas here only describe the same rules.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from runkernel.domain.policy import Enforcement, RuleKind, RuleStatus, Scope
from runkernel.entrypoints.api.schema_rules import NON_BLANK_TEXT, one_of
from runkernel.entrypoints.api.schemas import ID_PATTERN, USD_SCHEMA, Body, Version

PARAMS_DOC = (
    "max_cost: {max_cost_usd} or {max_cost_micros} (stored as max_cost_micros); max_tokens: "
    "{max_tokens}; max_steps: {max_steps}; max_duration: {max_duration_s}; allowed_skills, "
    "denied_skills, require_approval: {skills: [names]}"
)
COUNT = {"type": "integer", "minimum": 0}


def _exactly(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(properties),
        "properties": properties,
    }


_SKILLS = _exactly(
    skills={
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "pattern": NON_BLANK_TEXT},
    }
)
PARAMS: dict[RuleKind, dict[str, Any]] = {
    RuleKind.MAX_COST: {
        "anyOf": [_exactly(max_cost_usd=USD_SCHEMA), _exactly(max_cost_micros=COUNT)]
    },
    RuleKind.MAX_TOKENS: _exactly(max_tokens=COUNT),
    RuleKind.MAX_STEPS: _exactly(max_steps=COUNT),
    RuleKind.MAX_DURATION: _exactly(max_duration_s={"type": "number", "minimum": 0}),
    RuleKind.ALLOWED_SKILLS: _SKILLS,
    RuleKind.DENIED_SKILLS: _SKILLS,
    RuleKind.REQUIRE_APPROVAL: _SKILLS,
}
assert set(PARAMS) == set(RuleKind), "every rule kind has its params schema"


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


_SCOPES: dict[Scope, tuple[dict[str, Any], list[str]]] = {
    # Tenant scope is the default: the scope may be left out, and there is no agent.
    Scope.TENANT: ({"scope": _enum([Scope.TENANT]), "agent_id": {"type": "null"}}, []),
    Scope.AGENT: (
        {"scope": _enum([Scope.AGENT]), "agent_id": {"type": "string", "pattern": ID_PATTERN}},
        ["scope", "agent_id"],
    ),
}


def _create_schema(schema: dict[str, Any]) -> None:
    variants = []
    for kind, params in PARAMS.items():
        for scope_properties, required in _SCOPES.values():
            variants.append(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["kind", "params", *required],
                    "properties": {
                        "kind": _enum([kind]),
                        "params": params,
                        "enforcement": {**_enum(Enforcement), "default": Enforcement.BLOCK.value},
                        **scope_properties,
                    },
                }
            )
    description = "A rule: the params its kind takes; agent_id exactly when scope is agent."
    schema.clear()
    schema.update({"title": "PolicyCreate", "description": description, "anyOf": variants})


CHANGED = ("params", "enforcement", "status")


def _patch_schema(schema: dict[str, Any]) -> None:
    schema.clear()
    schema.update(
        {
            "title": "PolicyPatch",
            "description": "At least one of params, enforcement or status; params must be "
            "those of the rule's kind.",
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "anyOf": [{"required": [name]} for name in CHANGED],
            "properties": {
                "params": {"anyOf": _distinct(PARAMS.values()), "description": PARAMS_DOC},
                "enforcement": _enum(Enforcement),
                "status": {**_enum(RuleStatus), "description": "RETIRED: as POST …/retire"},
                "version": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "apply only if the rule is still at this version (else 409)",
                },
            },
        }
    )


def _distinct(schemas: Any) -> list[dict[str, Any]]:
    unique: list[dict[str, Any]] = []
    for schema in schemas:
        if schema not in unique:
            unique.append(schema)
    return unique


class PolicyCreate(Body):
    model_config = ConfigDict(json_schema_extra=_create_schema)

    kind: str = one_of(RuleKind)
    params: dict[str, Any] = Field(description=PARAMS_DOC, examples=[{"max_cost_usd": 0.5}])
    enforcement: str = one_of(Enforcement, Enforcement.BLOCK.value)
    scope: str = one_of(Scope, Scope.TENANT.value)
    agent_id: str | None = Field(None, description="required exactly when scope is agent")


class PolicyPatch(Body):
    model_config = ConfigDict(json_schema_extra=_patch_schema)

    params: dict[str, Any] | None = None
    enforcement: str | None = None
    status: str | None = None
    version: Version | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # A null would otherwise read as "leave it alone", which the schema does not offer.
        if isinstance(data, dict):
            nulls = sorted(str(k) for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: leave a field out instead of null")
        return data

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"version"})
