"""A body over the limit gets a 413 the client can read, over a real uvicorn server.

An HTTP/1.1 client sends its whole request before it reads the answer, so a server that
answers and closes while the body is still arriving leaves the client with a broken pipe
or a reset instead of the 413. The middleware reads the refused body to its end first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.entrypoints.api.limits import BodyLimitMiddleware
from runkernel.entrypoints.serve import BackgroundServer

REPEATS = 20


@pytest.fixture
def sqlite_kernel(sqlite_url: str) -> Iterator[Kernel]:
    k = build_kernel(make_settings(sqlite_url))
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def server(sqlite_kernel: Kernel) -> Iterator[BackgroundServer]:
    with BackgroundServer(sqlite_kernel) as background:
        yield background


def oversized(size: int) -> bytes:
    return b'{"agent_id": "a", "plan": {}, "metadata": {"pad": "' + b"x" * size + b'"}}'


def chunked(body: bytes) -> Iterator[bytes]:  # an iterator: httpx sends it chunked
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def assert_413(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert f"the limit is {limit} bytes" in error["message"]


@pytest.mark.parametrize("size", [1_600_000, 5_000_000], ids=["1.6MB", "5MB"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_every_oversized_request_reads_a_413(
    server: BackgroundServer, sqlite_kernel: Kernel, size: int, framing: str
) -> None:
    tenant = make_tenant(sqlite_kernel)
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    body = oversized(size)
    limit = sqlite_kernel.settings.max_payload_bytes
    # A fresh connection each time: the race was between our close and the client's send.
    for _ in range(REPEATS):
        content: Any = body if framing == "content-length" else chunked(body)
        response = httpx.post(
            f"{server.url}/api/v1/runs", content=content, headers=headers, timeout=30
        )
        assert_413(response, limit)


def test_the_connection_stays_usable_after_a_drained_413(
    server: BackgroundServer, sqlite_kernel: Kernel
) -> None:
    tenant: TenantContext = make_tenant(sqlite_kernel)
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        assert_413(
            client.post("/api/v1/runs", content=oversized(1_600_000)),
            sqlite_kernel.settings.max_payload_bytes,
        )
        assert client.get("/api/v1/runs").json() == {"runs": [], "next_cursor": None}


# -- the edges of draining, on the middleware itself ----------------------------------
class Channel:
    """An ASGI receive/send pair: the body arrives in ``chunks`` of ``chunk`` bytes."""

    def __init__(self, total: int, chunk: int) -> None:
        self.remaining = total
        self.chunk = chunk
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        piece = min(self.chunk, self.remaining)
        self.remaining -= piece
        self.received += piece
        return {"type": "http.request", "body": b"x" * piece, "more_body": self.remaining > 0}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def answer(self) -> tuple[int, dict[bytes, bytes]]:
        start = self.sent[0]
        return start["status"], dict(start["headers"])


async def never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the application must not see a refused body")


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/api/v1/runs", "headers": headers}


def run_middleware(channel: Channel, headers: list[tuple[bytes, bytes]]) -> None:
    middleware = BodyLimitMiddleware(never_called, max_bytes=1000, drain_max_bytes=10_000)
    asyncio.run(middleware(scope(headers), channel.receive, channel.send))


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_within_the_drain_cap_is_read_to_its_end_and_the_connection_kept(
    declared: bool,
) -> None:
    channel = Channel(total=8000, chunk=500)
    run_middleware(channel, [(b"content-length", b"8000")] if declared else [])
    assert channel.received == 8000 and channel.remaining == 0
    status, headers = channel.answer()
    assert status == 413 and b"connection" not in headers


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_past_the_drain_cap_is_answered_and_the_connection_closed(declared: bool) -> None:
    channel = Channel(total=1_000_000, chunk=500)
    run_middleware(channel, [(b"content-length", b"1000000")] if declared else [])
    # A declared length past the cap is not read at all; a stream is read up to the cap.
    assert channel.received == (0 if declared else 10_500)
    status, headers = channel.answer()
    assert status == 413 and headers[b"connection"] == b"close"


def test_a_client_waiting_for_100_continue_is_answered_before_it_sends() -> None:
    channel = Channel(total=8000, chunk=500)
    run_middleware(channel, [(b"content-length", b"8000"), (b"expect", b"100-continue")])
    assert channel.received == 0
    status, headers = channel.answer()
    assert status == 413 and headers[b"connection"] == b"close"
