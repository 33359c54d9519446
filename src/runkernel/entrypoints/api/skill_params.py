"""The params of the built-in skills, as JSON Schema for the OpenAPI document.

Each skill's own validator (``adapters.skills``) decides; these schemas describe what it
accepts so a client, or a generator, can build valid steps. ``tests/integration/
test_api_openapi.py`` checks them against the validators: the same required and allowed
keys, and every example accepted. A skill registered without an entry here is documented
as "an object its skill checks".

Where JSON Schema cannot say it, the description does: any param may instead be a template
``{{steps.<earlier step>.output…}}``, and a JMESPath expression must compile.
"""

from __future__ import annotations

from typing import Any

from runkernel.adapters.skills.http import MAX_TIMEOUT_S, METHODS
from runkernel.adapters.skills.llm import MAX_TOKENS_LIMIT, ROLES
from runkernel.adapters.skills.pricing import DEFAULT_PRICES, known_models
from runkernel.entrypoints.api.schema_rules import STORABLE_REF, TEXT

STORABLE = {"$ref": STORABLE_REF}
TEMPLATES_DOC = "Any param may instead be a template {{steps.<earlier step_id>.output…}}."


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# urlsplit: an http or https scheme (any case) and a non-empty network location.
URL = {"type": "string", "pattern": f"^{_any_case('http')}[Ss]?://[^/?#]+"}
# A subset of JMESPath that always compiles: @, or dotted identifiers with list indices.
# The server takes any expression that compiles, which no regular expression describes.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
FIELD_PATH = rf"^(@|{_NAME}(\.{_NAME})*)(\[-?[0-9]+\])*$"
HEADERS = {
    "type": "object",
    "propertyNames": {"pattern": TEXT},
    "additionalProperties": {"type": "string", "pattern": TEXT},
}
NULLABLE_HEADERS = {"anyOf": [HEADERS, {"type": "null"}]}
TIMEOUT_S = {"type": "number", "minimum": 0.001, "maximum": MAX_TIMEOUT_S}


def _params(
    required: dict[str, Any], optional: dict[str, Any], example: dict[str, Any], doc: str
) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{doc} {TEMPLATES_DOC}",
        "additionalProperties": False,
        "required": sorted(required),
        "properties": {**required, **optional},
        "examples": [example],
    }


SKILL_PARAMS: dict[str, dict[str, Any]] = {
    "llm.chat": _params(
        {
            "model": {"type": "string", "enum": known_models(DEFAULT_PRICES)},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"type": "string", "enum": list(ROLES)},
                        "content": {"type": "string", "pattern": TEXT},
                    },
                    "additionalProperties": STORABLE,
                },
            },
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
        },
        {"temperature": {"type": "number", "minimum": 0, "maximum": 2}},
        {"model": "echo-1", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50},
        "A chat completion; the model must be one with a known price.",
    ),
    "json.transform": _params(
        {
            "data": STORABLE,
            "expression": {
                "type": "string",
                "pattern": FIELD_PATH,
                "description": "a field path such as a.b[0]; the server takes any JMESPath "
                "expression that compiles",
                "examples": ["a[0]"],
            },
        },
        {},
        {"data": {"a": [1, 2]}, "expression": "a[0]"},
        "The JMESPath expression (it must compile) applied to data.",
    ),
    "http.request": _params(
        {
            "method": {
                "type": "string",
                "pattern": "^(" + "|".join(_any_case(m) for m in METHODS) + ")$",
            },
            "url": URL,
        },
        {
            "headers": NULLABLE_HEADERS,
            "json": STORABLE,
            "timeout_s": TIMEOUT_S,
            "ok_status": {
                "anyOf": [
                    {"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 599}},
                    {"type": "null"},
                ]
            },
            "follow_redirects": {
                "type": "boolean",
                "description": "follow up to 5 redirects, each checked by the egress guard",
            },
            "idempotency_key": {
                "type": "boolean",
                "description": "send Idempotency-Key: <run_id>/<step_id>, the same on every "
                "retry and takeover",
            },
        },
        {"method": "GET", "url": "https://example.com/"},
        "An HTTP call (method in any case); the egress guard checks the destination when "
        "the step runs.",
    ),
    "webhook.send": _params(
        {"url": URL, "payload": STORABLE},
        {"headers": NULLABLE_HEADERS, "timeout_s": TIMEOUT_S},
        {"url": "https://example.com/hook", "payload": {"done": True}},
        "A signed POST of payload to url.",
    ),
}


def params_schema(skill: str) -> dict[str, Any]:
    """The params of ``skill``: its own schema, or any storable object for a skill that
    brought none."""
    if skill in SKILL_PARAMS:
        return SKILL_PARAMS[skill]
    return {
        "type": "object",
        "description": f"checked by {skill}. {TEMPLATES_DOC}",
        "propertyNames": {"pattern": TEXT},
        "additionalProperties": STORABLE,
    }
