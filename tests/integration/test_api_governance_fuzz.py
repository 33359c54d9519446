"""Random JSON against the policy rule bodies (the governance endpoints that take one):
whatever arrives, the answer is a non-5xx with the one error shape (DESIGN invariant 9).

Bodies range from near-valid rules (so the domain's validation and the database are
reached) to arbitrary JSON with NaN, huge numbers, NUL characters and lone surrogates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from conftest import TenantContext
from runkernel.bootstrap import Kernel
from runkernel.domain.policy import Enforcement, RuleKind, RuleStatus, Scope
from runkernel.entrypoints.api import create_app

text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)
numbers = st.integers(-5, 10**30) | st.floats() | json_values
param_names = st.sampled_from(
    ["max_cost_usd", "max_cost_micros", "max_tokens", "max_steps", "max_duration_s"]
)
params = (
    st.dictionaries(param_names, numbers, max_size=2)
    | st.fixed_dictionaries({"skills": st.lists(text, max_size=3) | json_values})
    | json_values
)


LIMIT_KEYS = {
    "max_cost": "max_cost_usd",
    "max_tokens": "max_tokens",
    "max_steps": "max_steps",
    "max_duration": "max_duration_s",
}
near_valid = st.sampled_from(sorted(LIMIT_KEYS)).flatmap(
    lambda kind: st.fixed_dictionaries(
        {"kind": st.just(kind), "params": st.fixed_dictionaries({LIMIT_KEYS[kind]: numbers})}
    )
) | st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["allowed_skills", "denied_skills", "require_approval"]),
        "params": st.fixed_dictionaries({"skills": st.lists(text, min_size=1, max_size=3)}),
    }
)


def member(enum: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([m.value for m in enum]) | text


def creates(agent_id: str) -> st.SearchStrategy[Any]:
    rule = near_valid | st.fixed_dictionaries({"kind": member(RuleKind), "params": params})
    options = st.fixed_dictionaries(
        {},
        optional={
            "enforcement": member(Enforcement),
            "scope": member(Scope),
            "agent_id": st.just(agent_id) | text | json_values,
        },
    )
    return st.tuples(rule, options).map(lambda parts: {**parts[0], **parts[1]}) | json_values


patches = (
    st.fixed_dictionaries(
        {},
        optional={
            "params": params | near_valid.map(lambda rule: rule["params"]),
            "enforcement": member(Enforcement),
            "status": member(RuleStatus),
            "version": st.integers(-2, 10**20) | json_values,
        },
    )
    | json_values
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with TestClient(create_app(kernel), raise_server_exceptions=False) as test_client:
        yield test_client


def check(response: Any, ok: int) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    else:
        assert response.status_code == ok


def raw(body: Any) -> bytes:
    # allow_nan: Python's own JSON (what FastAPI parses with) accepts NaN and Infinity.
    return json.dumps(body, allow_nan=True).encode()


def test_random_rule_bodies_never_get_a_5xx(client: TestClient, tenant: TenantContext) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    seed = {"kind": "max_steps", "params": {"max_steps": 3}}
    rule_id = client.post("/api/v1/policies", json=seed, headers=headers).json()["id"]

    @FUZZ
    @given(body=creates(tenant.agent.id))
    def create(body: Any) -> None:
        check(client.post("/api/v1/policies", content=raw(body), headers=headers), 201)

    @FUZZ
    @given(body=patches)
    def change(body: Any) -> None:
        response = client.patch(f"/api/v1/policies/{rule_id}", content=raw(body), headers=headers)
        check(response, 200)

    create()
    change()
    for rule in client.get("/api/v1/policies?include_retired=true", headers=headers).json()[
        "policies"
    ]:
        assert client.get(f"/api/v1/policies/{rule['id']}", headers=headers).status_code == 200
