"""A pure ASGI middleware that refuses request bodies over a size limit with 413.

It reads the whole body before the application sees it: a declared ``Content-Length``
over the limit is refused without reading, and a chunked body is counted as it
streams, so a client that lies about (or omits) its length is cut off at the limit.
Buffering is fine here because every body this API accepts is a small JSON document.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runkernel.entrypoints.api.errors import error_body


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"{declared} bytes")
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break  # the client went away; let the app see the disconnect
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            # The buffered body first, then the real channel (for disconnect notices).
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        message = f"request body is {size}; the limit is {self.max_bytes} bytes"
        body = json.dumps(error_body("payload_too_large", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The unread rest of the body makes the connection unusable.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
