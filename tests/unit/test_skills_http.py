"""http.request and webhook.send against a real HTTP server on 127.0.0.1, which each test
opens in the egress guard by its exact address and port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from runkernel.adapters.skills import SkillRegistry, build_default_registry, verify_signature
from runkernel.adapters.skills.webhook import sign
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext
from runkernel.errors import PlanValidationError

CTX = SkillContext(run_id="run-7", tenant_id="t", step_id="notify", attempt=1)
SECRET = "receiver-secret"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Server:
    base: str
    received: list[Received] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    """Routes: /json, /text, /status/<code>, /hook (checks the webhook signature)."""

    server: Any

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        verified = verify_signature(SECRET, body, self.headers.get("X-Runkernel-Signature"))
        self.server.record.append(
            Received(self.command, self.path, dict(self.headers.items()), body, verified)
        )
        if self.path == "/json":
            self._answer(200, json.dumps({"echo": body.decode() or None}), "application/json")
        elif self.path == "/text":
            self._answer(200, "plain words", "text/plain; charset=utf-8")
        elif self.path == "/mislabelled":
            self._answer(200, "not json {", "application/json")
        elif self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            self._answer(code, json.dumps({"code": code}), "application/problem+json")
        elif self.path == "/hook":
            if verified:
                self._answer(200, json.dumps({"accepted": True}), "application/json")
            else:
                self._answer(401, "bad signature", "text/plain")
        else:
            self._answer(404, "no route", "text/plain")

    def _answer(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = Server(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.record = state.received  # type: ignore[attr-defined]
    # A short poll interval so shutdown() at teardown returns at once, not after 0.5 s.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def make_registry(allow: str, secret: str = SECRET) -> SkillRegistry:
    return build_default_registry(Settings(webhook_secret=SecretStr(secret), egress_allow=allow))


def authority(base: str) -> str:
    return base.removeprefix("http://")


@pytest.fixture
def registry(server: Server) -> Iterator[SkillRegistry]:
    registry = make_registry(authority(server.base))
    yield registry
    registry.close()


# --- http.request ------------------------------------------------------------------------


def test_post_json_and_parse_json_reply(server: Server, registry: SkillRegistry) -> None:
    params = {
        "method": "post",
        "url": server.base + "/json",
        "json": {"b": 1, "a": [2]},
        "headers": {"X-Custom": "v"},
    }
    registry.validate("http.request", params)

    result = registry.invoke("http.request", params, CTX)

    assert result.ok
    assert result.output["status"] == 200
    assert json.loads(result.output["body"]["echo"]) == {"b": 1, "a": [2]}
    assert result.output["headers"]["x-test"] == "yes"
    [seen] = server.received
    assert (seen.method, seen.path, seen.headers["X-Custom"]) == ("POST", "/json", "v")


def test_text_reply_is_text(server: Server, registry: SkillRegistry) -> None:
    result = registry.invoke("http.request", {"method": "GET", "url": server.base + "/text"}, CTX)

    assert result.output["body"] == "plain words"
    assert result.output["headers"]["content-type"] == "text/plain; charset=utf-8"


def test_mislabelled_json_reply_falls_back_to_text(server: Server, registry: SkillRegistry) -> None:
    result = registry.invoke(
        "http.request", {"method": "GET", "url": server.base + "/mislabelled"}, CTX
    )

    assert result.ok
    assert result.output["body"] == "not json {"


def test_non_2xx_fails_the_step_but_keeps_the_output(
    server: Server, registry: SkillRegistry
) -> None:
    url = server.base + "/status/503"

    result = registry.invoke("http.request", {"method": "DELETE", "url": url}, CTX)

    assert result.error == f"http.request: DELETE {url} answered HTTP 503"
    assert result.output["status"] == 503
    assert result.output["body"] == {"code": 503}  # +json media type parsed as JSON


def test_ok_status_accepts_listed_codes(server: Server, registry: SkillRegistry) -> None:
    params = {"method": "GET", "url": server.base + "/status/404", "ok_status": [404, 410]}

    result = registry.invoke("http.request", params, CTX)

    assert result.ok
    assert result.output["status"] == 404


def test_connection_refused_fails_the_step_without_the_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The socket is closed, so nothing listens on the port.
    registry = make_registry(f"127.0.0.1:{port}")
    try:
        result = registry.invoke(
            "http.request", {"method": "GET", "url": f"http://127.0.0.1:{port}/"}, CTX
        )
    finally:
        registry.close()

    # The words a filtered port (a connect timeout) gets too: no errno, no "refused".
    assert result.error == (
        f"http.request: GET http://127.0.0.1:{port}/ failed: could not connect to 127.0.0.1:{port}"
    )


def test_timeout_fails_the_step() -> None:
    # A listening socket that never accepts: the connection is made, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        registry = make_registry(authority(url).rstrip("/"))
        try:
            result = registry.invoke(
                "http.request", {"method": "GET", "url": url, "timeout_s": 0.05}, CTX
            )
        finally:
            registry.close()

    assert result.error is not None
    assert result.error.startswith(f"http.request: GET {url} failed: ReadTimeout")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "TRACE", "url": "http://x"}, "method must be one of GET, POST"),
        ({"method": "GET", "url": "ftp://x/y"}, "url must be an absolute http(s) URL"),
        ({"method": "GET", "url": "/relative"}, "url must be an absolute http(s) URL"),
        ({"method": "GET", "url": "http://x", "timeout_s": 0}, "timeout_s must be a number"),
        ({"method": "GET", "url": "http://x", "ok_status": [99]}, "ok_status[] must be"),
        ({"method": "GET", "url": "http://x", "ok_status": 404}, "ok_status must be a list"),
        ({"method": "GET", "url": "http://x", "headers": {"a": 1}}, "headers must be an object"),
    ],
)
def test_http_validator_rejects(
    registry: SkillRegistry, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlanValidationError) as info:
        registry.validate("http.request", params)

    assert str(info.value).startswith("http.request: " + message)


# --- webhook.send ------------------------------------------------------------------------


def test_webhook_signs_the_exact_body_and_receiver_verifies(server: Server) -> None:
    registry = make_registry(authority(server.base))
    params = {
        "url": server.base + "/hook",
        "payload": {"z": 1, "a": {"y": [1, 2], "b": "é"}},
        "headers": {"X-Extra": "1", "x-runkernel-signature": "forged"},
    }
    try:
        registry.validate("webhook.send", params)
        result = registry.invoke("webhook.send", params, CTX)
    finally:
        registry.close()

    assert result.ok
    assert result.output == {"status": 200, "body": {"accepted": True}}
    [seen] = server.received
    assert seen.verified
    assert seen.body == b'{"a":{"b":"\\u00e9","y":[1,2]},"z":1}'  # compact, sorted keys
    assert seen.headers["X-Runkernel-Signature"] == sign(SECRET, seen.body)
    assert seen.headers["X-Runkernel-Timestamp"].isdigit()
    assert seen.headers["X-Runkernel-Idempotency-Key"] == "run-7/notify" == CTX.idempotency_key
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Extra"] == "1"


def test_webhook_with_wrong_secret_is_rejected_and_fails_the_step(server: Server) -> None:
    registry = make_registry(authority(server.base), "another-secret")
    url = server.base + "/hook"
    try:
        result = registry.invoke("webhook.send", {"url": url, "payload": [1]}, CTX)
    finally:
        registry.close()

    assert result.error == f"webhook.send: POST {url} answered HTTP 401"
    assert result.output == {"status": 401, "body": "bad signature"}
    assert server.received[0].verified is False


def test_webhook_non_2xx_fails_the_step(server: Server, registry: SkillRegistry) -> None:
    url = server.base + "/status/500"

    result = registry.invoke("webhook.send", {"url": url, "payload": {"a": 1}}, CTX)

    assert result.error == f"webhook.send: POST {url} answered HTTP 500"
    assert result.output == {"status": 500, "body": {"code": 500}}


def test_webhook_payload_that_is_not_json_fails_the_step(registry: SkillRegistry) -> None:
    result = registry.invoke(
        "webhook.send", {"url": "http://127.0.0.1:9/", "payload": {"s": {1, 2}}}, CTX
    )

    assert result.error is not None
    assert result.error.startswith("webhook.send: payload is not JSON")


def test_verify_signature() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body)

    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, body, header)
    assert verify_signature(SecretStr(SECRET), body, header)
    assert verify_signature(SECRET.encode(), body, header)
    assert not verify_signature(SECRET, b'{"a":2}', header)
    assert not verify_signature("other", body, header)
    assert not verify_signature(SECRET, body, header[:-1])
    assert not verify_signature(SECRET, body, header.removeprefix("sha256="))
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "")


# --- idempotency keys --------------------------------------------------------------------


def test_idempotency_key_is_run_and_step_and_stable_across_tries() -> None:
    first = SkillContext(run_id="run-7", tenant_id="t", step_id="notify", attempt=1)
    after_crash = SkillContext(
        run_id="run-7", tenant_id="t", step_id="notify", attempt=2, try_number=3
    )

    assert first.idempotency_key == after_crash.idempotency_key == "run-7/notify"


def test_http_request_sends_the_idempotency_key_when_asked(
    server: Server, registry: SkillRegistry
) -> None:
    url = server.base + "/json"
    asked = {"method": "POST", "url": url, "idempotency_key": True}
    registry.validate("http.request", asked)

    registry.invoke("http.request", asked, CTX)
    registry.invoke("http.request", {"method": "POST", "url": url}, CTX)
    registry.invoke(
        "http.request",
        {**asked, "headers": {"idempotency-key": "forged", "X-Other": "kept"}},
        CTX,
    )

    sent, not_asked, overridden = server.received
    assert sent.headers["Idempotency-Key"] == "run-7/notify"
    assert "Idempotency-Key" not in not_asked.headers
    assert overridden.headers["Idempotency-Key"] == "run-7/notify"
    assert overridden.headers["X-Other"] == "kept"
    assert [k for k in overridden.headers if k.lower() == "idempotency-key"] == ["Idempotency-Key"]


@pytest.mark.parametrize("flag", ["idempotency_key", "follow_redirects"])
def test_flags_must_be_booleans(registry: SkillRegistry, flag: str) -> None:
    with pytest.raises(PlanValidationError, match=f"{flag} must be true or false, got 'yes'"):
        registry.validate("http.request", {"method": "GET", "url": "http://x", flag: "yes"})
    registry.validate("http.request", {"method": "GET", "url": "http://x", flag: "{{t}}"})
