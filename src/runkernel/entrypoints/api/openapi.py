"""The OpenAPI document: what FastAPI generates from the routes and models, plus the
components the models refer to by name (``StorableJson``, ``Plan``, ``PlanStep``), which
depend on this server's skills and limits.

A plan (:func:`plan_schema`) states the fields and bounds ``domain.plans.parse_plan``
checks, one step variant per skill with that skill's params, at most ``max_plan_steps``
steps. What JSON Schema cannot state is in its description: step ids and output keys are
unique, templates refer to earlier steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import WithJsonSchema

from runkernel.domain.money import MAX_USD, SMALLEST_USD
from runkernel.domain.plans import MAX_RETRIES, STEP_ID, OnError
from runkernel.entrypoints.api.schema_rules import STORABLE_JSON, TEXT
from runkernel.entrypoints.api.skill_params import params_schema

PLAN_DOC = (
    "Ordered steps. Rules beyond this schema: step ids and output keys are unique within "
    "the plan; a template {{steps.<step_id>.output…}} refers to an earlier step. Each "
    "skill checks its own params (an invalid one is a 422 naming the step)."
)
STEP_FIELDS: dict[str, Any] = {
    "step_id": {
        "type": "string",
        "pattern": STEP_ID.pattern,
        "description": "default: step<index>",
    },
    "on_error": {"type": "string", "enum": [e.value for e in OnError]},
    "retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
    "output_key": {
        "anyOf": [{"type": "string", "minLength": 1, "pattern": TEXT}, {"type": "null"}]
    },
    "estimated_cost_usd": {
        # 0, or at least one micro-dollar (as the schemas' USD_SCHEMA), or null: none.
        "anyOf": [
            {"type": "number", "const": 0},
            {"type": "number", "minimum": float(SMALLEST_USD), "maximum": MAX_USD},
            {"type": "null"},
        ],
        "description": "the most one call of the skill may cost, reserved against the run's "
        "and the agent's budget before the step (llm.chat estimates its own)",
    },
}
# Wrapped: pydantic resolves a bare "$ref" as one of its own definitions.
PLAN = WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/Plan"}]})


def plan_schema(skills: Iterable[str], max_steps: int) -> dict[str, dict[str, Any]]:
    """The ``Plan`` and ``PlanStep`` components for a server with ``skills``."""
    variants = [
        {
            "type": "object",
            "additionalProperties": False,
            # A skill with required params needs the params object.
            "required": ["skill", "params"] if params_schema(skill).get("required") else ["skill"],
            "properties": {
                "skill": {"type": "string", "enum": [skill]},
                "params": params_schema(skill),
                **STEP_FIELDS,
            },
        }
        for skill in sorted(skills)
    ]
    plan = {
        "type": "object",
        "description": PLAN_DOC,
        "additionalProperties": False,
        "required": ["steps"],
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {"$ref": "#/components/schemas/PlanStep"},
            }
        },
    }
    return {"Plan": plan, "PlanStep": {"oneOf": variants}}


def install(app: FastAPI, *, skills: Iterable[str], max_steps: int) -> None:
    """Add the named components to the app's OpenAPI document."""
    components = {"StorableJson": STORABLE_JSON, **plan_schema(skills, max_steps)}
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
