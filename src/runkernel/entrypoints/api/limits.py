"""A pure ASGI middleware that refuses request bodies over a size limit with 413.

It reads the whole body before the application sees it: a declared ``Content-Length``
over the limit is refused without passing anything on, and a chunked body is counted as
it streams, so a client that lies about (or omits) its length is cut off at the limit.
Buffering is fine here because every body this API accepts is a small JSON document.

A refused body is still read to its end (and thrown away) before the 413 goes out, up to
``drain_max_bytes``. An HTTP/1.1 client writes its whole request before it reads the
answer; answering and closing while it is still writing resets the connection under it,
so it sees a broken pipe instead of the 413. Only a body past the drain cap, or a client
that asked ``Expect: 100-continue`` (it waits for our word before sending), is answered at
once and the connection closed.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runkernel.entrypoints.api.errors import error_body

# Reading up to this much of a refused body costs little; past it, a broken pipe for the
# client is cheaper than reading on.
DRAIN_MAX_BYTES = 16 * 1024 * 1024


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, drain_max_bytes: int = DRAIN_MAX_BYTES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_max_bytes = max(drain_max_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            drained = (
                declared <= self.drain_max_bytes
                and not _expects_continue(scope)
                and await self._drain(receive, 0)
            )
            await self._refuse(send, f"{declared} bytes", close=not drained)
            return
        buffered: list[Message] = []
        size_read = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break  # the client went away; let the app see the disconnect
            size_read += len(message.get("body", b""))
            if size_read > self.max_bytes:
                drained = not message.get("more_body", False) or await self._drain(
                    receive, size_read
                )
                await self._refuse(send, f"more than {self.max_bytes} bytes", close=not drained)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            # The buffered body first, then the real channel (for disconnect notices).
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, already: int) -> bool:
        """Read and discard the rest of the body: True when it ended within the drain cap
        (answer and keep the connection), False past the cap or on a disconnect (after
        which the server drops whatever is sent)."""
        read = already
        while read <= self.drain_max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return False
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return read <= self.drain_max_bytes
        return False

    async def _refuse(self, send: Send, size: str, *, close: bool) -> None:
        message = f"request body is {size}; the limit is {self.max_bytes} bytes"
        body = json.dumps(error_body("payload_too_large", message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            # The unread rest of the body makes the connection unusable.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"]
    )
