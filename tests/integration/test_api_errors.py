"""Every bad input gets the right 4xx and the one error shape, never a 500."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, auth, make_tenant
from runkernel.bootstrap import Kernel

ECHO_STEP = ECHO_PLAN["steps"][0]


def assert_error(response: Any, status: int, code: str | None = None) -> str:
    """Check status and shape; return the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def with_plan(**changes: Any) -> dict[str, Any]:
    plan = copy.deepcopy(ECHO_PLAN)
    plan["steps"][0].update(changes)
    return plan


later_step_template = {
    "steps": [
        {**ECHO_STEP, "step_id": "first", "params": {"data": "{{steps.second.output}}"}},
        {**ECHO_STEP, "step_id": "second"},
    ]
}


# (case, body changes, status, code, a word the message must contain)
BAD_RUNS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("unknown skill", {"plan": with_plan(skill="no.such")}, 422, "invalid_plan", "no.such"),
    ("later step", {"plan": later_step_template}, 422, "invalid_template", "second"),
    ("bad template", {"plan": with_plan(params={"x": "{{nope}}"})}, 422, "invalid_template", ""),
    (
        "too many steps",
        {"plan": {"steps": [{**ECHO_STEP, "step_id": f"s{i}"} for i in range(101)]}},
        422,
        "plan_too_large",
        "101",
    ),
    ("empty plan", {"plan": {"steps": []}}, 422, "invalid_plan", "step"),
    ("plan not object", {"plan": ["x"]}, 422, "invalid_request", "plan"),
    ("missing plan", {"plan": None}, 422, "invalid_request", "plan"),
    ("unknown agent", {"agent_id": "agt_nope"}, 404, "unknown_agent", "agt_nope"),
    ("negative cost", {"budget": {"max_cost_usd": -1}}, 422, "invalid_request", "max_cost_usd"),
    ("zero tokens", {"budget": {"max_tokens": 0}}, 422, "invalid_request", "max_tokens"),
    ("string steps", {"budget": {"max_steps": "5"}}, 422, "invalid_request", "max_steps"),
    ("bool steps", {"budget": {"max_steps": True}}, 422, "invalid_request", "max_steps"),
    ("negative timeout", {"budget": {"timeout_s": -5}}, 422, "invalid_request", "timeout_s"),
    ("huge cost", {"budget": {"max_cost_usd": 1e300}}, 422, "invalid_request", "max_cost_usd"),
    ("typo in budget", {"budget": {"max_cost": 1}}, 422, "invalid_request", "max_cost"),
    ("unknown field", {"colour": "red"}, 422, "invalid_request", "colour"),
    ("empty idem key", {"idempotency_key": ""}, 422, "invalid_request", "idempotency_key"),
    ("long idem key", {"idempotency_key": "k" * 201}, 422, "invalid_request", "idempotency_key"),
    ("metadata list", {"metadata": [1]}, 422, "invalid_request", "metadata"),
    ("NUL in metadata", {"metadata": {"a": "x\x00y"}}, 422, "invalid_request", "metadata.a"),
    ("NUL in key", {"idempotency_key": "a\x00"}, 422, "invalid_request", "NUL"),
]


@pytest.mark.parametrize(("case", "changes", "status", "code", "word"), BAD_RUNS)
def test_bad_run_submissions(
    client: TestClient,
    tenant: TenantContext,
    case: str,
    changes: dict[str, Any],
    status: int,
    code: str,
    word: str,
) -> None:
    body = {"agent_id": tenant.agent.id, "plan": ECHO_PLAN, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    message = assert_error(
        client.post("/api/v1/runs", json=body, headers=auth(tenant)), status, code
    )
    assert word in message
    assert client.get("/api/v1/runs", headers=auth(tenant)).json()["runs"] == []


# Raw bodies that Python's json accepts or chokes on in ways a database would not.
RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"agent_id": "a", "plan": ', "invalid_json"),
    ("not utf-8", b'{"agent_id": "\xff\xfe"}', "invalid_json"),
    ("nested past the parser", b"[" * 100_000, "invalid_json"),
    ("NaN", b'{"agent_id": "AGENT", "plan": {"steps": []}, "metadata": {"x": NaN}}', ""),
    ("Infinity", b'{"agent_id": "AGENT", "plan": {}, "budget": {"timeout_s": Infinity}}', ""),
    ("lone surrogate", b'{"agent_id": "AGENT", "plan": {}, "metadata": {"\\ud800": 1}}', ""),
    (
        "deep but parsable",
        b'{"agent_id": "AGENT", "plan": {}, "metadata": ' + b'{"a":' * 200 + b"1" + b"}" * 201,
        "",
    ),
    ("array body", b"[1, 2]", "invalid_request"),
    ("empty object", b"{}", "invalid_request"),
]


@pytest.mark.parametrize(("case", "raw", "code"), RAW_BODIES)
def test_malformed_bodies_are_422(
    client: TestClient, tenant: TenantContext, case: str, raw: bytes, code: str
) -> None:
    raw = raw.replace(b"AGENT", tenant.agent.id.encode())
    headers = {**auth(tenant), "Content-Type": "application/json"}
    assert_error(client.post("/api/v1/runs", content=raw, headers=headers), 422, code or None)


def test_a_body_that_is_not_declared_json_is_422(client: TestClient, tenant: TenantContext) -> None:
    response = client.post(
        "/api/v1/runs", content=b"{}", headers={**auth(tenant), "Content-Type": "text/plain"}
    )
    assert "application/json" in assert_error(response, 422, "invalid_json")


def test_an_oversized_body_is_413_whether_declared_or_streamed(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    limit = kernel.settings.max_payload_bytes
    body = b'{"agent_id": "x", "plan": {}, "metadata": {"pad": "' + b"x" * limit + b'"}}'
    headers = {**auth(tenant), "Content-Type": "application/json"}
    declared = client.post("/api/v1/runs", content=body, headers=headers)
    assert_error(declared, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the middleware must count
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    streamed = client.post("/api/v1/runs", content=chunks(), headers=headers)
    assert_error(streamed, 413, "payload_too_large")
    assert client.get("/api/v1/runs", headers=auth(tenant)).json()["runs"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer rk_wrong"},
        {"Authorization": "Basic abc"},
    ],
)
def test_missing_or_bad_keys_are_401(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/agents"),
    ]:
        response = client.request(method, path, headers=headers, json={})
        assert_error(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_suspended_tenant_reads_but_is_refused_the_rest(
    kernel: Kernel, client: TestClient
) -> None:
    suspended = make_tenant(kernel)
    with kernel.db.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("UPDATE tenants SET status = 'suspended' WHERE id = :id"),
            {"id": suspended.principal.tenant_id},
        )
    assert client.get("/api/v1/runs", headers=auth(suspended)).status_code == 200
    submitted = client.post(
        "/api/v1/runs",
        headers=auth(suspended),
        json={"agent_id": suspended.agent.id, "plan": ECHO_PLAN},
    )
    assert_error(submitted, 403, "tenant_suspended")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/run_nope",
        "/api/v1/runs/%00",
        "/api/v1/runs/" + "x" * 65,
        "/api/v1/agents/agt_nope",
        "/api/v1/agents/a%0Ab",
    ],
)
def test_unknown_ids_are_404(client: TestClient, tenant: TenantContext, path: str) -> None:
    assert_error(client.get(path, headers=auth(tenant)), 404, "not_found")


def test_cancel_of_an_unknown_run_is_404(client: TestClient, tenant: TenantContext) -> None:
    response = client.post("/api/v1/runs/run_nope/cancel", headers=auth(tenant))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"status": "bogus"},
        {"agent_id": "a\x00"},
        {"cursor": "x" * 65},
    ],
)
def test_bad_search_parameters_are_422(
    client: TestClient, tenant: TenantContext, params: dict[str, Any]
) -> None:
    response = client.get("/api/v1/runs", params=params, headers=auth(tenant))
    message = assert_error(response, 422)
    assert next(iter(params)) in message


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")
    response = client.delete("/api/v1/runs")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"]  # starlette names the methods of the first match
