"""Random JSON bodies against ``POST /api/v1/runs``: whatever arrives, the answer is a
non-5xx, and every error carries the one error shape (DESIGN invariant 9).

The bodies range from near-valid plans (so validation, T0 and the database are reached)
to arbitrary JSON, including what Python's ``json`` accepts but a database does not:
NaN, Infinity, NUL characters and lone surrogates.
"""

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
from runkernel.entrypoints.api import create_app

text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
step_ids = st.sampled_from(["a", "b", "c"]) | text
transform_steps = st.fixed_dictionaries(
    {
        "step_id": step_ids,
        "skill": st.just("json.transform"),
        "params": st.fixed_dictionaries(
            {
                "data": json_values | st.just("{{steps.a.output}}"),
                "expression": st.sampled_from(["@", "a.b", "[0]", "length(@)", "{{x"]) | text,
            }
        ),
    },
    optional={"on_error": st.sampled_from(["abort", "continue"]), "retries": st.integers(0, 2)},
)
chat_steps = st.fixed_dictionaries(
    {
        "step_id": step_ids,
        "skill": st.just("llm.chat"),
        "params": st.fixed_dictionaries(
            {
                "model": st.just("echo-1") | text,
                "messages": st.lists(
                    st.fixed_dictionaries({"role": st.just("user"), "content": text}),
                    min_size=1,
                    max_size=2,
                )
                | json_values,
                "max_tokens": st.integers(-1, 100) | json_values,
            }
        ),
    }
)
wild_steps = st.fixed_dictionaries(
    {"skill": st.sampled_from(["json.transform", "http.request", "nope"]) | text},
    optional={
        "step_id": step_ids | json_values,
        "params": json_values,
        "on_error": json_values,
        "retries": json_values,
        "output_key": json_values,
        "extra": json_values,
    },
)
plans = (
    st.fixed_dictionaries(
        {"steps": st.lists(transform_steps | chat_steps | wild_steps, min_size=1, max_size=4)}
    )
    | json_values
)
budgets = st.fixed_dictionaries(
    {},
    optional={
        "max_cost_usd": st.floats(0, 100) | json_values,
        "max_tokens": st.integers(-5, 10**20) | json_values,
        "max_steps": st.integers(-5, 10**20),
        "timeout_s": st.floats() | st.integers(),
    },
)


def bodies(agent_id: str) -> st.SearchStrategy[Any]:
    structured = st.fixed_dictionaries(
        {"agent_id": st.just(agent_id) | text, "plan": plans},
        optional={
            "budget": budgets | json_values,
            "idempotency_key": text | json_values,
            "metadata": st.dictionaries(text, json_values, max_size=3) | json_values,
        },
    )
    return structured | json_values


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with TestClient(create_app(kernel), raise_server_exceptions=False) as test_client:
        yield test_client


def test_random_bodies_never_get_a_5xx(client: TestClient, tenant: TenantContext) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies(tenant.agent.id))
    def post(body: Any) -> None:
        # allow_nan: Python's own JSON (what FastAPI parses with) accepts NaN and Infinity.
        raw = json.dumps(body, allow_nan=True).encode()
        response = client.post("/api/v1/runs", content=raw, headers=headers)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
        else:
            assert response.status_code in (200, 202)
            assert response.json()["id"].startswith("run_")

    post()
