"""Assembles the FastAPI application: routers, error mapping, body limit and offline docs."""

from __future__ import annotations

from fastapi import FastAPI

from runkernel import __version__
from runkernel.bootstrap import Kernel
from runkernel.entrypoints.api import (
    health,
    routes_agents,
    routes_audit,
    routes_incidents,
    routes_keys,
    routes_lessons,
    routes_metrics,
    routes_policies,
    routes_runs,
    routes_tenants,
)
from runkernel.entrypoints.api.auth import rate_limiter
from runkernel.entrypoints.api.docs import install as install_docs
from runkernel.entrypoints.api.errors import install as install_error_handlers
from runkernel.entrypoints.api.limits import BodyLimitMiddleware
from runkernel.entrypoints.api.openapi import install as install_openapi
from runkernel.entrypoints.governance_services import GovernanceServices

DESCRIPTION = """\
Submit governed LLM agent runs and inspect them.

Every endpoint except `/healthz`, `/readyz` and `/metrics` needs `Authorization: Bearer <api key>`.
Every error answers `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(kernel: Kernel) -> FastAPI:
    """The API over ``kernel``; the caller owns the kernel (and closes it)."""
    app = FastAPI(
        title="runkernel",
        version=__version__,
        description=DESCRIPTION,
        # FastAPI's own pages load their assets from a CDN; docs.install serves them locally.
        docs_url=None,
        redoc_url=None,
    )
    app.state.kernel = kernel
    app.state.governance = GovernanceServices.of(kernel)
    app.state.rate_limiter = rate_limiter(kernel)  # per process: see services.rate_limits
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(routes_agents.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_incidents.router)
    app.include_router(routes_policies.router)
    app.include_router(routes_lessons.router)
    app.include_router(routes_keys.router)
    app.include_router(routes_tenants.router)
    app.include_router(routes_metrics.router)
    install_openapi(app, skills=kernel.skills.names(), max_steps=kernel.settings.max_plan_steps)
    # Outermost, so an oversized body is refused before anything reads it.
    app.add_middleware(BodyLimitMiddleware, max_bytes=kernel.settings.max_payload_bytes)
    return app
