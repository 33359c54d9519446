"""``runkernel serve`` as a user runs it: one process with the API and the workers, driven
by the tenant-facing CLI commands as separate processes; SIGTERM drains a running run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from conftest import make_settings
from e2e.processes import Process, create_tenant, free_port, kernel_env, runkernel, wait_healthy
from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.cli.demo_receiver import LocalReceiver

PLAN = {
    "steps": [
        {
            "step_id": "ask",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": "three words here"}],
                "max_tokens": 20,
            },
        },
        {
            "step_id": "shout",
            "skill": "json.transform",
            "params": {"data": "{{steps.ask.output}}", "expression": "content"},
        },
    ]
}


def test_serve_runs_cli_submissions_and_drains_on_sigterm(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'serve.db'}"
    receiver = LocalReceiver("unused").start()
    # The slow endpoint is on loopback: open exactly it in the egress guard.
    env = {**kernel_env(database_url), "RUNKERNEL_EGRESS_ALLOW": receiver.authority}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = Process(
        "serve", ["serve", "--port", str(port), "--log-level", "warning"], env, tmp_path
    )
    try:
        wait_healthy(url, serve)
        tenant = create_tenant("acme", env)
        remote = ["--url", url, "--api-key", tenant["api_key"]]
        agent = json.loads(
            runkernel("agents", "create", "writer", "--budget-usd", "2", "--json", *remote, env=env)
        )

        # A plan file holding a whole submission; flags add to its budget.
        plan_file = tmp_path / "plan.yaml"
        plan_file.write_text(yaml.safe_dump({"plan": PLAN, "budget": {"max_steps": 5}}))
        out = runkernel(
            "submit",
            str(plan_file),
            "--agent",
            agent["id"],
            "--max-tokens",
            "1000",
            "--wait",
            "--json",
            *remote,
            env=env,
        )
        run = json.loads(out)
        assert run["status"] == "succeeded"
        assert run["budget"]["max_steps"] == 5 and run["budget"]["max_tokens"] == 1000
        assert run["steps"][-1]["output"] == "three words here"

        listed = runkernel("runs", "--status", "succeeded", *remote, env=env)
        assert run["id"] in listed
        shown = runkernel("show", run["id"], *remote, env=env)
        assert "COMPLETED" in shown and "llm.chat" in shown and "json.transform" in shown

        # A run busy in a 1.5 s step when SIGTERM arrives finishes before the process exits.
        slow = {
            "steps": [
                {
                    "step_id": "wait",
                    "skill": "http.request",
                    "params": {"method": "GET", "url": f"{receiver.url}/slow?ms=1500"},
                }
            ]
        }
        (tmp_path / "slow.json").write_text(json.dumps(slow))
        slow_id = json.loads(
            runkernel(
                "submit",
                str(tmp_path / "slow.json"),
                "--agent",
                agent["id"],
                "--json",
                *remote,
                env=env,
            )
        )["id"]
        headers = {"Authorization": f"Bearer {tenant['api_key']}"}
        deadline = time.monotonic() + 10
        while (
            httpx.get(f"{url}/api/v1/runs/{slow_id}", headers=headers).json()["status"] != "running"
        ):
            assert time.monotonic() < deadline, "the slow run never started"
            time.sleep(0.05)
        assert serve.stop() == 0, serve.output
    finally:
        serve.stop()
        receiver.stop()

    kernel = build_kernel(make_settings(database_url))
    try:
        principal = kernel.tenancy.authenticate(tenant["api_key"])
        drained = kernel.runs.get(principal, slow_id)
    finally:
        kernel.close()
    assert drained.status.value == "succeeded", drained


def test_submit_wait_exits_1_when_the_run_fails(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'serve.db'}"
    env = kernel_env(database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = Process(
        "serve", ["serve", "--port", str(port), "--log-level", "warning"], env, tmp_path
    )
    try:
        wait_healthy(url, serve)
        tenant = create_tenant("acme", env)
        remote = ["--url", url, "--api-key", tenant["api_key"]]
        agent = json.loads(
            runkernel("agents", "create", "w", "--budget-usd", "1", "--json", *remote, env=env)
        )
        failing = {
            "steps": [
                {
                    "step_id": "pick",
                    "skill": "json.transform",
                    "params": {"data": {"a": 1}, "expression": "a.b.c("},
                }
            ]
        }
        (tmp_path / "fail.json").write_text(json.dumps(failing))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "runkernel",
                "submit",
                str(tmp_path / "fail.json"),
                "--agent",
                agent["id"],
                "--wait",
                *remote,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    finally:
        serve.stop()
