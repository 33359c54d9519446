"""End to end over real HTTP: an API process (uvicorn) and a worker process on one
database, tenants made by the CLI, everything else through the public API with httpx.

Runs once on a SQLite file and once on the PostgreSQL test database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ECHO_PLAN
from e2e.processes import Process, create_tenant, free_port, kernel_env, runkernel, wait_healthy

FINAL = {"COMPLETED", "FAILED"}


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    api: Process
    worker: Process


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    env = kernel_env(database_url)
    # Explicit, as an operator would on PostgreSQL (where api and worker never migrate).
    runkernel("db", "upgrade", env=env)
    port = free_port()
    processes: list[Process] = []
    try:
        api = Process("api", ["api", "--port", str(port), "--log-level", "warning"], env, tmp_path)
        processes.append(api)
        worker = Process("worker", ["worker", "--concurrency", "4"], env, tmp_path)
        processes.append(worker)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, api)
        worker.wait_for_output("started:")
        yield Stack(url, env, api, worker)
    finally:
        for process in reversed(processes):
            process.stop()


def client(stack: Stack, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    )


def wait_final(http: httpx.Client, run_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["phase"] in FINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.1)


def test_runs_succeed_over_http_and_tenants_stay_apart(stack: Stack) -> None:
    a = create_tenant("tenant-a", stack.env)
    b = create_tenant("tenant-b", stack.env)
    assert a["tenant_id"] != b["tenant_id"]

    with client(stack, a["api_key"]) as http_a, client(stack, b["api_key"]) as http_b:
        agent_a = http_a.post("/api/v1/agents", json={"name": "writer", "budget_usd": 5})
        agent_b = http_b.post("/api/v1/agents", json={"name": "writer", "budget_usd": 5})
        assert agent_a.status_code == 201, agent_a.text
        assert agent_b.status_code == 201, agent_b.text
        agent_a_id, agent_b_id = agent_a.json()["id"], agent_b.json()["id"]

        submitted = {}
        for name, http, agent_id in (("a", http_a, agent_a_id), ("b", http_b, agent_b_id)):
            response = http.post(
                "/api/v1/runs",
                json={
                    "agent_id": agent_id,
                    "plan": ECHO_PLAN,
                    "budget": {"max_cost_usd": 1, "max_tokens": 10_000, "timeout_s": 60},
                },
            )
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "queued"
            submitted[name] = response.json()["id"]

        for http, run_id in ((http_a, submitted["a"]), (http_b, submitted["b"])):
            run = wait_final(http, run_id)
            assert run["status"] == "succeeded", run
            assert run["phase"] == "COMPLETED"
            steps = run["steps"]
            assert [s["step_id"] for s in steps] == ["ask", "pick", "again"]
            assert all(s["status"] == "succeeded" for s in steps)
            llm_steps = [s for s in steps if s["skill"] == "llm.chat"]
            for step in llm_steps:
                assert step["usage"]["input_tokens"] > 0
                assert step["usage"]["output_tokens"] > 0
                assert step["cost_usd"] > 0
            assert run["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in steps))
            assert run["usage"]["input_tokens"] == sum(s["usage"]["input_tokens"] for s in steps)
            # The last step echoed what the template handed it from the first.
            assert steps[-1]["output"]["content"] == "echo: hello governed world"

        # Tenant walls: A's key cannot see B's run or agent, nor find B's runs in a list.
        assert http_a.get(f"/api/v1/runs/{submitted['b']}").status_code == 404
        assert http_a.get(f"/api/v1/agents/{agent_b_id}").status_code == 404
        assert http_a.post(f"/api/v1/runs/{submitted['b']}/cancel").status_code == 404
        listed = http_a.get("/api/v1/runs", params={"limit": 500}).json()["runs"]
        assert [r["id"] for r in listed] == [submitted["a"]]
        agents = http_a.get("/api/v1/agents").json()["agents"]
        assert [ag["id"] for ag in agents] == [agent_a_id]
        # Nor can A submit a run for B's agent.
        foreign = http_a.post("/api/v1/runs", json={"agent_id": agent_b_id, "plan": ECHO_PLAN})
        assert foreign.status_code in (404, 422), foreign.text
        assert foreign.json()["error"]["code"] == "unknown_agent"


def test_worker_drains_and_exits_cleanly_on_sigterm(stack: Stack) -> None:
    """The worker prints its id and, on SIGTERM, stops with exit code 0."""
    assert "worker " in stack.worker.output
    assert stack.worker.stop() == 0
    assert "stopped: claimed" in stack.worker.output
