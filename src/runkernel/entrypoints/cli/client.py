"""A small typed client of the runkernel HTTP API (``/api/v1``), used by the tenant-facing
commands and the demo. Every failure comes out as :class:`ApiError` or
:class:`ServerUnreachable`; httpx's own exceptions never leave this module."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from runkernel.entrypoints.cli.errors import ApiError, CliError, ServerUnreachable

FINAL_PHASES = frozenset({"COMPLETED", "FAILED"})
# A 429 is refused before the API does anything, so any request may be sent again.
RATE_LIMIT_RETRIES = 5
LONGEST_WAIT_S = 30.0

JsonObject = dict[str, Any]


def is_final(run: JsonObject) -> bool:
    return run.get("phase") in FINAL_PHASES


class ApiClient:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- endpoints ----------------------------------------------------------------
    def create_agent(self, name: str, budget_usd: float) -> JsonObject:
        return self._object("POST", "/api/v1/agents", json={"name": name, "budget_usd": budget_usd})

    def list_agents(self) -> list[JsonObject]:
        body = self._request("GET", "/api/v1/agents")
        # Accept a bare list as well as {"agents": [...]}: both are reasonable contracts.
        agents = body.get("agents", []) if isinstance(body, dict) else body
        return [a for a in agents if isinstance(a, dict)]

    def submit_run(self, submission: JsonObject) -> JsonObject:
        return self._object("POST", "/api/v1/runs", json=submission)

    def list_runs(
        self,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[JsonObject], str | None]:
        params = {"status": status, "agent_id": agent_id, "limit": limit, "cursor": cursor}
        body = self._object(
            "GET", "/api/v1/runs", params={k: v for k, v in params.items() if v is not None}
        )
        return list(body.get("runs", [])), body.get("next_cursor")

    def get_run(self, run_id: str) -> JsonObject:
        return self._object("GET", f"/api/v1/runs/{run_id}")

    def cancel_run(self, run_id: str) -> JsonObject:
        return self._object("POST", f"/api/v1/runs/{run_id}/cancel")

    def pause_run(self, run_id: str) -> JsonObject:
        return self._object("POST", f"/api/v1/runs/{run_id}/pause")

    def resume_run(self, run_id: str, note: str | None = None) -> JsonObject:
        return self._object("POST", f"/api/v1/runs/{run_id}/resume", json=_note(note))

    def reject_run(self, run_id: str, note: str | None = None) -> JsonObject:
        return self._object("POST", f"/api/v1/runs/{run_id}/reject", json=_note(note))

    def update_agent(self, agent_id: str, changes: JsonObject) -> JsonObject:
        """PATCH the given fields only; an absent field keeps its value."""
        return self._object("PATCH", f"/api/v1/agents/{agent_id}", json=changes)

    def wait(
        self,
        run_id: str,
        *,
        timeout_s: float | None = None,
        interval_s: float = 0.2,
        on_update: Callable[[JsonObject], None] | None = None,
    ) -> JsonObject:
        """Poll the run until its phase is final; ``on_update`` sees every answer."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            run = self.get_run(run_id)
            if on_update is not None:
                on_update(run)
            if is_final(run):
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(
                    f"run {run_id} is still {run.get('status')} after {timeout_s} s",
                    code="timeout",
                )
            time.sleep(interval_s)

    def get_audit(self, run_id: str) -> JsonObject:
        return self._object("GET", f"/api/v1/runs/{run_id}/audit")

    def get_evaluation(self, run_id: str) -> JsonObject:
        return self._object("GET", f"/api/v1/runs/{run_id}/evaluation")

    def list_incidents(self, run_id: str) -> list[JsonObject]:
        body = self._object("GET", "/api/v1/incidents", params={"run_id": run_id})
        return list(body.get("incidents") or [])

    # -- transport ----------------------------------------------------------------
    def _object(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        body = self._request(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ApiError(200, "bad_response", f"{method} {path} did not answer a JSON object")
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        for _ in range(RATE_LIMIT_RETRIES):
            if response.status_code != 429:
                break
            self._sleep(_retry_after_s(response))
            response = self._send(method, path, **kwargs)
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise ApiError(
                    response.status_code, "bad_response", f"{method} {path}: not JSON"
                ) from exc
        raise _api_error(response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from exc
        except httpx.HTTPError as exc:  # reached, but the exchange broke (read timeout, reset)
            raise CliError(
                f"{method} {self.url}{path}: {_reason(exc)}", code="request_failed"
            ) from exc


def _note(note: str | None) -> JsonObject:
    return {} if note is None else {"note": note}


def _retry_after_s(response: httpx.Response) -> float:
    try:
        wait = float(response.headers.get("Retry-After", "1"))
    except ValueError:  # an HTTP date or junk from something in between: wait a second
        wait = 1.0
    return min(max(wait, 0.0), LONGEST_WAIT_S)


def _reason(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


def _api_error(response: httpx.Response) -> ApiError:
    """The API's ``{"error": {"code", "message"}}``, or the bare status when a proxy or a
    server that is not runkernel answered."""
    status = response.status_code
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and "message" in error:
        return ApiError(status, str(error.get("code", f"http_{status}")), str(error["message"]))
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(status, f"http_{status}", text)
