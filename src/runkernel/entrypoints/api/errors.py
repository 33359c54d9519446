"""The one place where errors become HTTP responses.

Every error body is ``{"error": {"code": "...", "message": "..."}}``: runkernel's own
errors keep their stable code; request validation, unknown routes and methods, and
malformed bodies get the same shape, so a client needs one error parser. An error with
more to say adds fields beside code and message (``RunkernelError.details``: the run and
the violations of a ``policy_denied``), never another shape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from runkernel.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QueryValidationError,
    RateLimitedError,
    RunkernelError,
    StorageUnavailableError,
    ValidationError,
)

log = logging.getLogger(__name__)

# Looked up along the exception's MRO, so a subclass inherits its parent's status
# (PlanValidationError -> 422) unless it is listed itself (PayloadTooLargeError -> 413).
STATUS: Mapping[type[RunkernelError], int] = {
    ValidationError: 422,
    PayloadTooLargeError: 413,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    RateLimitedError: 429,
    StorageUnavailableError: 503,
}

HTTP_CODES: Mapping[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

MAX_LISTED_ERRORS = 5
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {**(details or {}), "code": _printable(code), "message": _printable(message)}}


def _printable(text: str) -> str:
    # Messages may quote client input; a lone surrogate in it would make the JSON
    # encoder raise, turning a 4xx into a 500.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def status_for(exc: RunkernelError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _runkernel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunkernelError)
    status = status_for(exc)
    if status == 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimitedError):  # whole seconds, rounded up: never too early
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return error_response(status, exc.code, exc.message, headers, exc.details())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        reason = problems[0].get("ctx", {}).get("error", "invalid JSON")
        return error_response(422, "invalid_json", f"request body is not valid JSON: {reason}")
    if len(problems) == 1 and isinstance(problems[0].get("input"), bytes | bytearray):
        # FastAPI passes a body through undecoded when it is not declared as JSON.
        return error_response(
            422, "invalid_json", "send the body as JSON with 'Content-Type: application/json'"
        )
    # Query parameters have one code, whichever layer refuses them (QueryValidationError).
    in_query = any(tuple(p.get("loc", ()))[:1] == ("query",) for p in problems)
    code = QueryValidationError.code if in_query else "invalid_request"
    return error_response(422, code, describe(problems))


def describe(problems: Sequence[Mapping[str, Any]]) -> str:
    """``budget.max_cost_usd: Input should be greater than or equal to 0; …``"""
    parts = [_one(p) for p in problems]
    extra = len(parts) - MAX_LISTED_ERRORS
    text = "; ".join(parts[:MAX_LISTED_ERRORS])
    return text + (f"; and {extra} more" if extra > 0 else "")


def _one(problem: Mapping[str, Any]) -> str:
    loc = problem.get("loc", ())
    error = problem.get("ctx", {}).get("error")
    if problem.get("type") == "value_error" and error is not None:
        # Our own validators name the place themselves; pydantic would prefix "Value error, ".
        return str(error) if tuple(loc) == ("body",) else f"{_where(loc)}: {error}"
    return f"{_where(loc)}: {problem.get('msg', 'invalid')}"


def _where(loc: Sequence[Any]) -> str:
    if not loc:
        return "request"
    source, path = str(loc[0]), ".".join(str(p) for p in loc[1:])
    if source == "body":
        return path or "body"
    return f"{source} parameter {path}" if path else source


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI answers 400 when a body cannot be decoded at all (bad UTF-8, JSON nested
        # past the parser's recursion limit); for the client that is malformed JSON too.
        return error_response(
            422, "invalid_json", "request body cannot be parsed as JSON (bad UTF-8 or nesting)"
        )
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, message, headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path.

    Starlette's own ``Allow`` names only the first route whose path matched, so a path
    served by two routes (``GET`` and ``POST /api/v1/runs``) would advertise one method.
    Asking each route whether it fully matches the path with each method also works for
    included routers and mounts, whatever their route classes."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s crashed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RunkernelError, _runkernel_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
