"""A failed step keeps its output: an ``http.request`` answered 500 is a failed step whose
status, headers and body are stored, shown in the run detail, and readable by a later
step of an ``on_error: continue`` plan (``{{steps.f.output.status}}``), on both databases.
The run's output takes only succeeded steps."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, auth, make_settings, make_tenant
from runkernel.adapters.skills import build_default_registry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.skills import SkillContext
from runkernel.errors import SkillError
from support.governance import drive


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"reason": "upstream broke", "retry": False}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-Id", "req-42")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def kernel(database_url: str, server: str) -> Iterator[Kernel]:
    # The egress guard refuses loopback unless allowed: allow exactly the test server.
    settings = make_settings(database_url, egress_allow=server)
    registry = build_default_registry(settings)

    def refuse(params: dict[str, Any], context: SkillContext) -> Any:
        raise SkillError("refused before answering")

    registry.register("test.refuse", refuse)
    k = build_kernel(settings, skills=registry)
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def tenant(kernel: Kernel) -> TenantContext:
    return make_tenant(kernel)


def run_plan(kernel: Kernel, client: TestClient, tenant: TenantContext, steps: list[Any]) -> Any:
    response = client.post(
        "/api/v1/runs",
        json={"agent_id": tenant.agent.id, "plan": {"steps": steps}},
        headers=auth(tenant),
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    drive(kernel, run_id)
    detail = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant))
    assert detail.status_code == 200
    return detail.json()


def test_an_http_error_keeps_its_output_for_the_run_detail_and_later_templates(
    kernel: Kernel, client: TestClient, tenant: TenantContext, server: str
) -> None:
    run = run_plan(
        kernel,
        client,
        tenant,
        [
            {
                "step_id": "f",
                "skill": "http.request",
                "params": {"method": "GET", "url": f"http://{server}/orders"},
                "on_error": "continue",
                "output_key": "raw",
            },
            {
                "step_id": "seen",
                "skill": "json.transform",
                "params": {
                    "data": {
                        "status": "{{steps.f.output.status}}",
                        "reason": "{{steps.f.output.body.reason}}",
                        "request": "{{steps.f.output.headers.x-request-id}}",
                        "text": "got {{steps.f.output.status}}",
                    },
                    "expression": "@",
                },
                "output_key": "seen",
            },
        ],
    )

    failed, seen = run["steps"]
    assert failed["status"] == "failed"
    assert failed["error"] == f"http.request: GET http://{server}/orders answered HTTP 500"
    assert failed["output"]["status"] == 500
    assert failed["output"]["body"] == {"reason": "upstream broke", "retry": False}
    assert failed["output"]["headers"]["x-request-id"] == "req-42"
    expected = {"status": 500, "reason": "upstream broke", "request": "req-42", "text": "got 500"}
    assert (seen["status"], seen["output"]) == ("succeeded", expected)
    assert run["status"] == "succeeded"
    # The run's output is what succeeded steps produced; the error's body stays on its step.
    assert run["output"] == {"raw": None, "seen": expected}


def test_a_failed_step_without_output_still_has_none_for_later_templates(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    run = run_plan(
        kernel,
        client,
        tenant,
        [
            {"step_id": "f", "skill": "test.refuse", "on_error": "continue"},
            {
                "step_id": "g",
                "skill": "json.transform",
                "params": {"data": "{{steps.f.output.status}}", "expression": "@"},
            },
        ],
    )
    failed, dependent = run["steps"]
    assert (failed["status"], failed["output"]) == ("failed", None)
    assert dependent["status"] == "failed"
    assert dependent["error"] == "{{steps.f.output.status}}: step 'f' has no output"
    assert run["error"]["code"] == "step_failed"
