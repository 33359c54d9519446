"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from runkernel.adapters.db import migrate, readiness
from runkernel.entrypoints.api.auth import KernelDep
from runkernel.entrypoints.api.errors import error_response
from runkernel.errors import StorageUnavailableError

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the error says why"}})
def readyz(kernel: KernelDep) -> JSONResponse:
    """The database answers, its schema is at the newest migration, and it takes writes
    (not full, not read-only)."""
    try:
        current = migrate.current_revision(kernel.db)
    except StorageUnavailableError as exc:  # a read failed: the database is away
        return error_response(503, "database_unavailable", exc.message)
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
    problem = readiness.write_problem(kernel.db)
    if problem is not None:
        return error_response(503, StorageUnavailableError.code, f"writes fail: {problem}")
    return JSONResponse({"status": "ready", "revision": head})
