"""Every bad query parameter on every route answers 422 with one code, ``invalid_query``,
whether FastAPI's parsing refuses it or a service's own check does.

The parameters come from the OpenAPI document, so a new query parameter is covered without
editing this file."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext
from runkernel.domain.incidents import Category
from runkernel.errors import QueryValidationError
from runkernel.services.paging import check_choice, check_limit


def bad_values(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """Values of a query parameter its schema refuses."""
    options = schema.get("anyOf", [schema])
    resolved = [
        components[o["$ref"].rsplit("/", 1)[-1]] if "$ref" in o else o
        for o in options
        if o.get("type") != "null"
    ]
    (one,) = resolved
    if "enum" in one:
        return ["nope", one["enum"][0].swapcase() + "x"]
    if one.get("type") == "integer":
        values = ["abc", "1.5"]
        if "minimum" in one:
            values.append(str(one["minimum"] - 1))
        if "maximum" in one:
            values.append(str(one["maximum"] + 1))
        return values
    if one.get("type") == "boolean":
        return ["maybe"]
    if one.get("type") == "string" and "pattern" in one:
        return ["!!", "a b"]
    raise AssertionError(f"no bad value known for {one}")


def query_parameters(client: TestClient) -> list[tuple[str, str, list[str]]]:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    values = bad_values(parameter["schema"], components)
                    found.append((f"{method.upper()} {path}", parameter["name"], values))
    return found


def concrete(path: str) -> str:
    return path.replace("{rule_id}", "pol_01a2332492b27c3502dbb664d551")


def test_every_bad_query_parameter_is_invalid_query(
    client: TestClient, tenant: TenantContext
) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    checked = 0
    for operation, name, values in query_parameters(client):
        method, path = operation.split(" ", 1)
        for value in values:
            response = client.request(method, concrete(path), params={name: value}, headers=headers)
            assert response.status_code == 422, (operation, name, value, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_query", (operation, name, value, error)
            assert name in error["message"], error
            checked += 1
    assert checked >= 20  # runs, incidents, lessons, reconciliations, policies


def test_the_services_refuse_bad_queries_with_the_same_code() -> None:
    with pytest.raises(QueryValidationError) as choice:
        check_choice("category", "NOPE", Category)
    with pytest.raises(QueryValidationError) as limit:
        check_limit(0)
    assert choice.value.code == limit.value.code == "invalid_query"
    assert "STALE_RUN" in choice.value.message
