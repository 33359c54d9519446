"""The OpenAPI document states what the server does, rule by rule, and the server agrees:
``Allow`` on a 405 lists the documented methods; enumerated fields (status, category, state,
…) are enumerations in queries and responses; every string a request may carry refuses NUL;
a policy's agent_id goes with scope agent; an empty change is refused; the built-in skills'
params are those their validators take. ``test_api_schema.py`` fuzzes the whole document;
these tests pin each rule down by name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from starlette.testclient import TestClient

from conftest import TenantContext
from runkernel.bootstrap import Kernel
from runkernel.entrypoints.api.skill_params import SKILL_PARAMS
from runkernel.errors import PlanValidationError

ENUMERATED = {
    "status",
    "category",
    "state",
    "phase",
    "severity",
    "kind",
    "enforcement",
    "scope",
    "outcome",
    "risk_level",
    "observability_status",
    "from_phase",
    "from_status",
    "to_phase",
    "to_status",
}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


def validator(document: dict[str, Any], component: str) -> Any:
    return jsonschema_rs.validator_for(
        {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    )


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def has_enum(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    """Every non-null alternative of the schema is an enumeration (or a constant)."""
    schema = resolve(schema, document)
    parts = schema.get("anyOf") or schema.get("oneOf")
    if parts:
        return all(has_enum(p, document) for p in parts if p.get("type") != "null")
    return "enum" in schema or "const" in schema


def walk(schema: Any, document: dict[str, Any], seen: set[str]) -> Iterator[tuple[str, Any]]:
    """(property name, schema) for every property reachable from ``schema``."""
    if isinstance(schema, list):
        for item in schema:
            yield from walk(item, document, seen)
        return
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            yield from walk(document["components"]["schemas"][name], document, seen)
        return
    for name, sub in schema.get("properties", {}).items():
        yield name, sub
    for key, value in schema.items():
        if key in ("properties",):
            for sub in value.values():
                yield from walk(sub, document, seen)
        elif isinstance(value, dict | list):
            yield from walk(value, document, seen)


def bodies(document: dict[str, Any], *, responses: bool) -> Iterator[tuple[str, Any]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            if responses:
                for status, answer in operation["responses"].items():
                    for media in answer.get("content", {}).values():
                        yield f"{where} -> {status}", media.get("schema", {})
            else:
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    yield where, media["schema"]


# -- Allow -------------------------------------------------------------------------
def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_01a2333116982df5b22df06be439", path)


def test_a_405_allows_exactly_the_documented_methods(
    client: TestClient, document: dict[str, Any]
) -> None:
    for path, operations in document["paths"].items():
        documented = {m.upper() for m in operations}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
            response = client.request(method, concrete(path))
            assert response.status_code == 405, (method, path, response.text)
            assert response.json()["error"]["code"] == "method_not_allowed"
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed - {"HEAD"} == documented, (method, path, allowed)


# -- enumerations ------------------------------------------------------------------
def test_enumerated_query_parameters_are_enumerations(document: dict[str, Any]) -> None:
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in ENUMERATED:
                    found.append(f"{method} {path} {parameter['name']}")
                    assert has_enum(parameter["schema"], document), found[-1]
    assert len(found) >= 5  # runs, incidents (status, category), lessons, reconciliations


def test_enumerated_fields_are_enumerations_in_every_body(document: dict[str, Any]) -> None:
    checked = set()
    for responses in (True, False):
        for where, schema in bodies(document, responses=responses):
            for name, sub in walk(schema, document, set()):
                if name in ENUMERATED:
                    assert has_enum(sub, document), f"{where}: {name} is not an enumeration"
                    checked.add(name)
    assert checked >= {"status", "category", "state", "phase", "kind", "scope", "outcome"}


# -- text ---------------------------------------------------------------------------
def string_schemas(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, list):
        for item in schema:
            yield from string_schemas(item)
    elif isinstance(schema, dict):
        if schema.get("type") == "string":
            yield schema
        for value in schema.values():
            yield from string_schemas(value)


def test_every_string_a_request_may_carry_refuses_nul(document: dict[str, Any]) -> None:
    nul = "x\x00y"
    request_components = set()
    for _, schema in bodies(document, responses=False):
        request_components |= {
            ref.rsplit("/", 1)[-1] for ref in re.findall(r"'\$ref': '([^']+)'", repr(schema))
        }
    names = {"StorableJson", "Plan", "PlanStep", "BudgetIn", *request_components}
    count = 0
    for name in names:
        for schema in string_schemas(document["components"]["schemas"][name]):
            if "enum" in schema or "const" in schema:
                continue
            assert "pattern" in schema, f"{name}: {schema}"
            assert not re.search(schema["pattern"], nul), f"{name}: {schema}"
            count += 1
    assert count > 20


def test_no_pydantic_constraint_leaks_into_the_document(document: dict[str, Any]) -> None:
    text = repr(document)
    assert "'ge':" not in text and "'le':" not in text and "'gt':" not in text


# -- policies ------------------------------------------------------------------------
RULE = {"kind": "max_steps", "params": {"max_steps": 3}, "enforcement": "WARN"}


def scoped(tenant: TenantContext) -> list[tuple[dict[str, Any], bool]]:
    agent = tenant.agent.id
    return [
        (RULE, True),
        ({**RULE, "scope": "tenant"}, True),
        ({**RULE, "scope": "tenant", "agent_id": None}, True),
        ({**RULE, "scope": "agent", "agent_id": agent}, True),
        ({**RULE, "scope": "agent"}, False),
        ({**RULE, "scope": "agent", "agent_id": None}, False),
        ({**RULE, "scope": "tenant", "agent_id": agent}, False),
        ({**RULE, "agent_id": agent}, False),
        ({"kind": "max_steps", "params": {"max_tokens": 3}}, False),
        ({"kind": "max_cost", "params": {"max_cost_usd": 1, "max_cost_micros": 1}}, False),
        ({"kind": "max_cost", "params": {"max_cost_usd": 1e-9}}, False),
        ({"kind": "denied_skills", "params": {"skills": [" "]}}, False),
        ({"kind": "denied_skills", "params": {"skills": ["http.request"]}}, True),
    ]


def test_the_policy_schema_and_the_server_agree_on_scope_and_params(
    client: TestClient, document: dict[str, Any], tenant: TenantContext
) -> None:
    schema = validator(document, "PolicyCreate")
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    for body, valid in scoped(tenant):
        assert schema.is_valid(body) is valid, body
        response = client.post("/api/v1/policies", json=body, headers=headers)
        assert response.status_code == (201 if valid else 422), (body, response.text)


def test_an_empty_change_is_refused_by_the_schema_and_the_server(
    client: TestClient, document: dict[str, Any], tenant: TenantContext
) -> None:
    patch = document["components"]["schemas"]["PolicyPatch"]
    assert patch["minProperties"] == 1
    schema = validator(document, "PolicyPatch")
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    rule_id = client.post("/api/v1/policies", json=RULE, headers=headers).json()["id"]
    for change, valid in [
        ({}, False),
        ({"version": 1}, False),
        ({"enforcement": None}, False),
        ({"enforcement": "BLOCK", "params": None}, False),
        ({"enforcement": "BLOCK"}, True),
        ({"params": {"max_steps": 4}, "version": 2}, True),
    ]:
        assert schema.is_valid(change) is valid, change
        response = client.patch(f"/api/v1/policies/{rule_id}", json=change, headers=headers)
        assert response.status_code == (200 if valid else 422), (change, response.text)


# -- skills --------------------------------------------------------------------------
def keys_in(message: str, label: str) -> set[str]:
    found = re.search(rf"{label}: ([^;]*)", message)
    assert found, message
    return {key.strip() for key in found.group(1).split(",")}


@pytest.mark.parametrize("skill", sorted(SKILL_PARAMS))
def test_the_documented_params_of_a_skill_are_those_its_validator_takes(
    kernel: Kernel, skill: str
) -> None:
    schema = SKILL_PARAMS[skill]
    (example,) = schema["examples"]
    kernel.skills.validate(skill, example)
    with pytest.raises(PlanValidationError) as missing:
        kernel.skills.validate(skill, {})
    assert keys_in(missing.value.message, "missing param\\(s\\)") == set(schema["required"])
    with pytest.raises(PlanValidationError) as unknown:
        kernel.skills.validate(skill, {**example, "zz_unknown": 1})
    assert keys_in(unknown.value.message, "allowed") == set(schema["properties"])


def test_every_registered_skill_is_a_step_variant(kernel: Kernel, document: dict[str, Any]) -> None:
    variants = document["components"]["schemas"]["PlanStep"]["oneOf"]
    skills = [v["properties"]["skill"]["enum"][0] for v in variants]
    assert skills == kernel.skills.names()
    step = validator(document, "Plan")
    for skill, params in sorted(SKILL_PARAMS.items()):
        assert step.is_valid({"steps": [{"skill": skill, "params": params["examples"][0]}]})
        assert not step.is_valid({"steps": [{"skill": skill, "params": {}}]})
