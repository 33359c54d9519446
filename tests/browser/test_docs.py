"""The offline OpenAPI page in a real browser: Debian's chromium through Playwright opens
``/docs`` on a live uvicorn server with every non-local request blocked, finds the
``POST /api/v1/runs`` operation rendered, and submits a run from the page with a real key.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from conftest import ECHO_PLAN, TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.entrypoints.api import create_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _require_chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} not found (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: browser tests must run)")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = build_kernel(make_settings(f"sqlite:///{tmp_path / 'browser.db'}"))
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def base_url(kernel: Kernel) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(create_app(kernel), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_docs_render_offline_and_submit_a_run(kernel: Kernel, base_url: str) -> None:
    _require_chromium()
    from playwright.sync_api import Route, sync_playwright

    tenant: TenantContext = make_tenant(kernel)
    foreign: list[str] = []

    def only_local(route: Route) -> None:
        # An air-gapped install has no CDN: anything not from our server must not be needed.
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.route("**/*", only_local)
            page.goto(f"{base_url}/docs")
            operation = page.locator(
                '.opblock.opblock-post:has(.opblock-summary-path[data-path="/api/v1/runs"])'
            )
            operation.wait_for(state="visible", timeout=20_000)
            assert "Submit Run" in operation.inner_text()

            result: dict[str, Any] = page.evaluate(
                """async ([key, body]) => {
                    const response = await fetch('/api/v1/runs', {
                        method: 'POST',
                        headers: {'Authorization': 'Bearer ' + key,
                                  'Content-Type': 'application/json'},
                        body: JSON.stringify(body),
                    });
                    return {status: response.status, body: await response.json(),
                            location: response.headers.get('Location')};
                }""",
                [tenant.api_key, {"agent_id": tenant.agent.id, "plan": ECHO_PLAN}],
            )
        finally:
            browser.close()

    assert foreign == []
    assert result["status"] == 202, result
    run = kernel.runs.get(tenant.principal, result["body"]["id"])
    assert run.status.value == "queued" and len(run.plan["steps"]) == 3
    assert result["location"].endswith(f"/api/v1/runs/{run.id}")
