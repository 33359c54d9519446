"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from runkernel.adapters.db import migrate
from runkernel.entrypoints.api.auth import KernelDep
from runkernel.entrypoints.api.errors import error_response

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the error says why"}})
def readyz(kernel: KernelDep) -> JSONResponse:
    """The database answers and its schema is at the newest migration."""
    try:
        current = migrate.current_revision(kernel.db)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        log.warning("readiness: database unreachable: %s", exc)
        return error_response(
            503,
            "database_unavailable",
            f"database unreachable ({type(exc).__name__}); see the server log",
        )
    head = migrate.head_revision()
    if current != head:
        return error_response(
            503, "migrations_pending", f"schema is at {current or 'nothing'}; code needs {head}"
        )
    return JSONResponse({"status": "ready", "revision": head})
