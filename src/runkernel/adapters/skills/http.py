"""``http.request``: one HTTP call, through the egress guard.

Params: ``{"method", "url", "headers"?, "json"?, "timeout_s"?, "ok_status"?: [int],
"follow_redirects"?: bool, "idempotency_key"?: bool}``.
Output: ``{"status", "headers", "body"}``; ``body`` is parsed JSON when the response says
it is JSON, else text (decompressed, so ``headers`` has no ``content-encoding``). A status
outside 2xx and not in ``ok_status`` fails the step, but the output is still returned so an
``on_error: continue`` plan can read it.

- The destination must pass the egress guard (:mod:`.egress`): no loopback, private,
  link-local or metadata address unless ``RUNKERNEL_EGRESS_ALLOW`` opens it; a refusal fails
  the step with ``egress_denied``. Every call starts without cookies.
- ``follow_redirects`` (default false: a 3xx is the answer) follows up to 5 hops, each
  passing the guard.
- The body is read up to ``RUNKERNEL_MAX_STEP_OUTPUT_BYTES``; a larger one fails the step.
- ``idempotency_key: true`` sends ``Idempotency-Key: <run_id>/<step_id>``. It is the same on
  every retry and after a crash, when the call in flight is made again (step side effects
  are at-least-once), so a receiver that honours the header can drop the repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from runkernel.adapters.skills._checks import (
    check_at_call,
    check_keys,
    check_number,
    fail,
    skip,
)
from runkernel.adapters.skills.egress import Egress
from runkernel.adapters.telemetry.redaction import redact_url
from runkernel.domain.skills import SkillContext, SkillResult

NAME = "http.request"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
_OPTIONAL = ("headers", "json", "timeout_s", "ok_status", "follow_redirects", "idempotency_key")


class HttpRequestSkill:
    def __init__(self, egress: Egress) -> None:
        self._egress = egress

    @staticmethod
    def validate(params: Mapping[str, Any], *, templates: bool = True) -> None:
        check_keys(params, ("method", "url"), _OPTIONAL)
        method = params["method"]
        if not skip(method, templates) and (
            not isinstance(method, str) or method.upper() not in METHODS
        ):
            fail(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        check_url(params["url"], templates)
        check_headers(params.get("headers"), templates)
        if "timeout_s" in params:
            check_timeout(params["timeout_s"], templates)
        ok_status = params.get("ok_status")
        if ok_status is not None and not skip(ok_status, templates):
            if not isinstance(ok_status, list):
                fail(f"ok_status must be a list of status codes, got {ok_status!r}")
            for code in ok_status:
                check_number(
                    "ok_status[]", code, low=100, high=599, integer=True, templates=templates
                )
        for flag in ("follow_redirects", "idempotency_key"):
            value = params.get(flag, False)
            if not skip(value, templates) and not isinstance(value, bool):
                fail(f"{flag} must be true or false, got {value!r}")

    def __call__(self, params: dict[str, Any], context: SkillContext) -> SkillResult:
        check_at_call(NAME, self.validate, params)
        method, url = params["method"].upper(), params["url"]
        headers = dict(params.get("headers") or {})
        if params.get("idempotency_key"):
            headers = {k: v for k, v in headers.items() if k.lower() != "idempotency-key"}
            headers[IDEMPOTENCY_HEADER] = context.idempotency_key
        response = self._egress.send(
            NAME,
            method,
            url,
            headers=headers,
            json=params.get("json"),
            timeout=params.get("timeout_s", DEFAULT_TIMEOUT_S),
            follow_redirects=params.get("follow_redirects", False),
        )
        output = {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": decode_body(response),
        }
        if response.is_success or response.status_code in (params.get("ok_status") or ()):
            return SkillResult(output=output)
        return SkillResult(
            output=output,
            error=f"{NAME}: {method} {redact_url(url)} answered HTTP {response.status_code}",
        )


def decode_body(response: httpx.Response) -> Any:
    """JSON when the content type says so (``application/json``, ``…+json``) and it parses;
    text otherwise, so a server that mislabels its body still shows what it sent."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return response.json()
        except ValueError:
            return response.text  # mislabelled: show the body as sent
    return response.text


def check_url(url: object, templates: bool) -> None:
    if skip(url, templates):
        return
    if not isinstance(url, str):
        fail(f"url must be an absolute http(s) URL, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what finds a bad one ("http://h:x")
    except ValueError as exc:  # "http://[::1" (Invalid IPv6 URL), a port out of range, ...
        fail(f"url {url!r} cannot be parsed: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"url must be an absolute http(s) URL, got {url!r}")


def check_headers(headers: object, templates: bool) -> None:
    if headers is None or skip(headers, templates):
        return
    if not isinstance(headers, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        fail(f"headers must be an object of strings, got {headers!r}")


def check_timeout(timeout_s: object, templates: bool) -> None:
    # The lower bound keeps a zero timeout (which httpx reads as "fail at once") out.
    check_number(
        "timeout_s", timeout_s, low=0.001, high=MAX_TIMEOUT_S, integer=False, templates=templates
    )
