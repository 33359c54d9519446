"""The rules the server enforces on request bodies, stated as JSON Schema, so the OpenAPI
document says what is accepted (and a generator such as schemathesis builds only requests
the server takes, or only ones it refuses).

- Text: PostgreSQL cannot store a NUL character, so no accepted string holds one
  (``domain.storable`` refuses them; :data:`TEXT` says so).
- Free-form JSON (metadata, skill params) is :data:`STORABLE_JSON`: any JSON whose strings
  and keys hold no NUL, nested at most ``MAX_DEPTH`` levels (that depth is documented, not
  expressible).

Plans and skill params build on these (:mod:`.openapi`, :mod:`.skill_params`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, WithJsonSchema

from runkernel.domain.storable import MAX_DEPTH

TEXT = r"^[^\x00]*$"
# At least one character that is neither whitespace nor NUL: names are stripped first.
NON_BLANK_TEXT = r"^[^\x00]*[^\s\x00][^\x00]*$"

STORABLE_REF = "#/components/schemas/StorableJson"
STORABLE_JSON: dict[str, Any] = {
    "description": (
        "Any JSON value whose strings and keys contain no NUL (\\u0000) character, nested "
        f"at most {MAX_DEPTH} levels deep"
    ),
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string", "pattern": TEXT},
        {"type": "array", "items": {"$ref": STORABLE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": TEXT},
            "additionalProperties": {"$ref": STORABLE_REF},
        },
    ],
}


def storable_object(description: str) -> WithJsonSchema:
    """The schema of a free-form JSON object field (metadata, params)."""
    return WithJsonSchema(
        {
            "type": "object",
            "description": description,
            "propertyNames": {"pattern": TEXT},
            "additionalProperties": {"$ref": STORABLE_REF},
        }
    )


def one_of(enum: type[StrEnum], default: Any = ..., description: str | None = None) -> Any:
    """A string field documented as one of ``enum``'s values (``...``: required).

    The field stays a plain string so the domain, which owns the enum, checks it and names
    the allowed values in its message; the schema states the same set."""
    return Field(
        default, description=description, json_schema_extra={"enum": [e.value for e in enum]}
    )
