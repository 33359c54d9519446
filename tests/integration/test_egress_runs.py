"""Runs of hostile and ordinary tenants through the real kernel and workers: a plan cannot
reach the host or the metadata service, and a cookie one tenant's run was given is never
sent on another run's behalf."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Run
from runkernel.entrypoints.worker import WorkerPool
from support.http_server import LocalServer, Reply, local_server


def _site(request: httpx.Request) -> Reply:
    if request.url.path == "/login":
        return Reply(200, {"Set-Cookie": "session=only-for-tenant-a; Path=/"}, b"welcome")
    return Reply(200, {"Content-Type": "text/plain"}, request.headers.get("cookie", "").encode())


@pytest.fixture
def site() -> Iterator[LocalServer]:
    with local_server(_site, keep_alive=True) as server:
        yield server


@pytest.fixture
def kernel(sqlite_url: str, site: LocalServer) -> Iterator[Kernel]:
    k = build_kernel(make_settings(sqlite_url, egress_allow=site.authority))
    k.migrate()
    yield k
    k.close()


def _get(step_id: str, url: str) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "skill": "http.request",
        "params": {"method": "GET", "url": url, "timeout_s": 5},
        "on_error": "continue",
    }


def _run(kernel: Kernel, tenant: TenantContext, *steps: dict[str, Any]) -> Run:
    run_id = kernel.runs.submit(
        tenant.principal, agent_id=tenant.agent.id, plan={"steps": list(steps)}
    ).run.id
    pool = WorkerPool(kernel, concurrency=1).start()
    try:
        deadline = time.monotonic() + 30
        while not kernel.runs.get(tenant.principal, run_id).finished_at_ms:
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.05)
    finally:
        pool.stop()
    return kernel.runs.get(tenant.principal, run_id)


def test_a_cookie_never_leaves_the_call_that_got_it(kernel: Kernel, site: LocalServer) -> None:
    a, b = make_tenant(kernel, "tenant-a"), make_tenant(kernel, "tenant-b")

    first = _run(kernel, a, _get("login", site.url("/login")), _get("echo", site.url("/echo")))
    other_tenant = _run(kernel, b, _get("echo", site.url("/echo")))
    next_run = _run(kernel, a, _get("echo", site.url("/echo")))

    login, echo = first.steps
    assert login.output["headers"]["set-cookie"].startswith("session=only-for-tenant-a")
    assert [echo.output["body"], other_tenant.steps[0].output["body"]] == ["", ""]
    assert next_run.steps[0].output["body"] == ""
    assert [r.headers.get("cookie") for r in site.requests] == [None] * 4


def test_a_plan_probing_the_host_and_the_metadata_service_is_refused(
    kernel: Kernel, site: LocalServer
) -> None:
    tenant = make_tenant(kernel)
    api_port = site.port + 1 if site.port < 65535 else site.port - 1

    run = _run(
        kernel,
        tenant,
        _get("metadata", "http://169.254.169.254/latest/meta-data/iam/"),
        _get("api", f"http://127.0.0.1:{api_port}/api/v1/runs"),  # not the allowed port
        _get("decimal", "http://2130706433/metrics"),
        _get("allowed", site.url("/echo")),
    )

    errors = {step.step_id: step.error for step in run.steps}
    assert errors["metadata"] == (
        "http.request: GET http://169.254.169.254/latest/meta-data/iam/: egress_denied: "
        "169.254.169.254 is a cloud metadata address; allow it with RUNKERNEL_EGRESS_ALLOW"
    )
    assert errors["api"] == (
        f"http.request: GET http://127.0.0.1:{api_port}/api/v1/runs: egress_denied: "
        "127.0.0.1 is a loopback address; allow it with RUNKERNEL_EGRESS_ALLOW"
    )
    assert (
        errors["decimal"] is not None
        and "2130706433 (127.0.0.1) is a loopback" in (errors["decimal"])
    )
    assert errors["allowed"] is None  # exactly what the operator opened still works
    assert [r.url.path for r in site.requests] == ["/echo"]
