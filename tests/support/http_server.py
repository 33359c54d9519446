"""A real HTTP/1.1 server on 127.0.0.1 for skill tests, answering with a handler function.

The handler takes the request as an ``httpx.Request`` (its URL built from the ``Host``
header the client sent) and returns an ``httpx.Response`` or a :class:`Reply` whose body
may be an iterable of chunks, sent chunked unless a ``Content-Length`` is given. The server
records every request (and the client port it came from) and counts the body bytes it
managed to send, so a test can tell how much a client really read before it hung up. It
closes every connection after one answer unless ``keep_alive`` is set.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


Handler = Callable[[httpx.Request], "httpx.Response | Reply"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: Handler, keep_alive: bool) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.handler = handler
        self.keep_alive = keep_alive
        self.requests: list[httpx.Request] = []
        self.peers: list[int] = []
        self.sent_bytes = 0
        self.lock = threading.Lock()


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        request = httpx.Request(
            self.command,
            f"http://{self.headers.get('Host', 'missing-host')}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        with self.server.lock:
            self.server.requests.append(request)
            self.server.peers.append(int(self.client_address[1]))
        answer = self.server.handler(request)
        if isinstance(answer, httpx.Response):
            answer = Reply(answer.status_code, dict(answer.headers.items()), answer.read())
        self.close_connection = not self.server.keep_alive
        self.send_response(answer.status)
        headers = {k.lower(): v for k, v in answer.headers.items()}
        chunked = not isinstance(answer.body, bytes) and "content-length" not in headers
        if isinstance(answer.body, bytes):
            headers.setdefault("content-length", str(len(answer.body)))
        if chunked:
            headers["transfer-encoding"] = "chunked"
        headers.pop("connection", None)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        chunks = [answer.body] if isinstance(answer.body, bytes) else answer.body
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                with self.server.lock:
                    self.server.sent_bytes += len(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return  # the client stopped reading, which is what some tests want to see

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output clean


@dataclass
class LocalServer:
    port: int
    _server: _Server

    @property
    def authority(self) -> str:
        """``127.0.0.1:<port>``, the egress allow entry that opens exactly this server."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.authority}{path}"

    @property
    def requests(self) -> list[httpx.Request]:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def peers(self) -> list[int]:
        """The client port of each request: a new port is a new connection."""
        with self._server.lock:
            return list(self._server.peers)

    @property
    def sent_bytes(self) -> int:
        with self._server.lock:
            return self._server.sent_bytes


@contextmanager
def local_server(
    handler: Handler, *, keep_alive: bool = False, tls: ssl.SSLContext | None = None
) -> Iterator[LocalServer]:
    """``tls``: a server-side context; connections are then HTTPS."""
    server = _Server(handler, keep_alive)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # A short poll interval so shutdown() returns at once, not after 0.5 s.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield LocalServer(int(server.server_address[1]), server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
