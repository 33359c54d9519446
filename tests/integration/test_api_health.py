"""Probes and the offline OpenAPI pages."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import make_settings
from runkernel.bootstrap import build_kernel
from runkernel.entrypoints.api import create_app


def test_healthz_and_readyz_answer_without_a_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_logs_nothing_per_call(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Probes come every few seconds; alembic's "Context impl …" / "Will assume …" lines
    per call used to flood the server log."""
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    server_lines = [
        r.getMessage() for r in caplog.records if r.name.startswith(("alembic", "runkernel"))
    ]
    assert server_lines == []


def test_readyz_is_503_before_migrations(tmp_path: Path) -> None:
    kernel = build_kernel(make_settings(f"sqlite:///{tmp_path / 'fresh.db'}"))
    try:
        with TestClient(create_app(kernel)) as client:
            response = client.get("/readyz")
            assert client.get("/healthz").status_code == 200
    finally:
        kernel.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "migrations_pending"


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    # Port 9 (discard) has nothing listening on this machine, so the connect is refused.
    kernel = build_kernel(make_settings("postgresql://postgres@127.0.0.1:9/none"))
    try:
        with TestClient(create_app(kernel)) as client:
            response = client.get("/readyz")
    finally:
        kernel.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_docs_pages_load_every_asset_from_this_server(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert assets, f"{page} references no assets"
        for url in urls:
            assert not url.startswith(("http:", "https:", "//")), f"{page} loads {url}"
        for url in assets:
            assert client.get(url).status_code == 200, url


def test_openapi_documents_the_api_and_its_bearer_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"post", "get"} <= set(spec["paths"]["/api/v1/runs"])
    assert "post" in spec["paths"]["/api/v1/runs/{run_id}/cancel"]
    assert {"post", "get"} <= set(spec["paths"]["/api/v1/agents"])
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    assert "ErrorResponse" in spec["components"]["schemas"]
