"""The demo's stand-in for the outside world: one HTTP server on 127.0.0.1 that plays an
upstream API (a JSON quote, an outage answering 500, a slow endpoint) and a webhook
receiver that checks runkernel's HMAC signature the way a real receiver would."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runkernel.adapters.skills import verify_signature

SIGNATURE_HEADER = "X-Runkernel-Signature"


@dataclass(frozen=True)
class Delivery:
    signature_valid: bool
    payload: Any
    idempotency_key: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # the demo's table is the log; request lines would scroll it away

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/quote":
            self._json(200, {"quote": "Budgets hold under concurrency", "source": "local"})
        elif parts.path == "/outage":
            self._json(500, {"error": "simulated upstream outage"})
        elif parts.path == "/slow":
            delay_ms = int(parse_qs(parts.query).get("ms", ["1500"])[0])
            time.sleep(min(delay_ms, 10_000) / 1000)
            self._json(200, {"slept_ms": delay_ms})
        else:
            self._json(404, {"error": f"no route {parts.path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/webhook":
            self._json(404, {"error": "no route"})
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        valid = verify_signature(self.server.secret, body, self.headers.get(SIGNATURE_HEADER))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with self.server.lock:
            self.server.deliveries.append(
                Delivery(valid, payload, self.headers.get("X-Runkernel-Idempotency-Key"))
            )
        # A real receiver refuses a bad signature; so does this one, failing the step.
        if valid:
            self._json(200, {"received": True})
        else:
            self._json(401, {"error": "bad signature"})

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LocalReceiver:
    def __init__(self, secret: str) -> None:
        self._server = _Server(secret)
        host, port = self._server.server_address[:2]
        self.authority = f"{host!s}:{port}"  # what RUNKERNEL_EGRESS_ALLOW must open
        self.url = f"http://{self.authority}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rk-demo-receiver", daemon=True
        )

    def start(self) -> LocalReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._server.lock:
            return list(self._server.deliveries)
