"""Response bodies are read up to RUNKERNEL_MAX_STEP_OUTPUT_BYTES and never further: a
30 MB answer fails the step with the limit named, having read about the limit, not 30 MB."""

from __future__ import annotations

import functools
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runkernel.adapters.skills import SkillRegistry, build_default_registry
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext, SkillResult
from support.http_server import LocalServer, Reply, local_server

CTX = SkillContext(run_id="r", tenant_id="t", step_id="big", attempt=1)
THIRTY_MB = 30 * 1024 * 1024
CHUNK = b"x" * 65536
LIMIT_WORDS = "the response body is larger than 1048576 bytes, the limit set by "
SETTING = "RUNKERNEL_MAX_STEP_OUTPUT_BYTES"


def _thirty_mb() -> Iterator[bytes]:
    for _ in range(THIRTY_MB // len(CHUNK)):
        yield CHUNK


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(b"\0" * THIRTY_MB)


def _big(request: httpx.Request) -> Reply:
    path = request.url.path
    if path == "/chunked":
        return Reply(200, {"Content-Type": "text/plain"}, _thirty_mb())
    if path == "/sized":
        return Reply(
            200, {"Content-Type": "text/plain", "Content-Length": str(THIRTY_MB)}, _thirty_mb()
        )
    if path == "/gzip-bomb":  # ~30 KB on the wire, 30 MB inflated
        return Reply(200, {"Content-Encoding": "gzip"}, _bomb())
    raise AssertionError(path)


@pytest.fixture
def big() -> Iterator[LocalServer]:
    with local_server(_big) as server:
        yield server


def _registry(server: LocalServer, **settings: Any) -> SkillRegistry:
    return build_default_registry(Settings(egress_allow=server.authority, **settings))


def _measured(
    registry: SkillRegistry, skill: str, params: dict[str, Any]
) -> tuple[SkillResult, int]:
    tracemalloc.start()
    try:
        result = registry.invoke(skill, params, CTX)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        registry.close()
    return result, peak


@pytest.mark.parametrize("path", ["/chunked", "/sized"])
def test_a_30_mb_answer_fails_the_step_without_being_read(big: LocalServer, path: str) -> None:
    url = big.url(path)

    result, peak = _measured(_registry(big), "http.request", {"method": "GET", "url": url})

    assert result.error == f"http.request: GET {url}: {LIMIT_WORDS}{SETTING}"
    assert result.output is None
    # What was held is about the limit, and the server could not hand over the 30 MB: the
    # client stopped reading and hung up (what it sent fits in the socket buffers).
    assert peak < 8 * 1024 * 1024
    assert big.sent_bytes < THIRTY_MB // 3


def test_a_gzip_bomb_is_stopped_at_the_limit_of_inflated_bytes(big: LocalServer) -> None:
    url = big.url("/gzip-bomb")
    assert len(_bomb()) < 64 * 1024  # made before measuring: the server's memory is not ours

    result, peak = _measured(_registry(big), "http.request", {"method": "GET", "url": url})

    assert result.error == f"http.request: GET {url}: {LIMIT_WORDS}{SETTING}"
    assert peak < 8 * 1024 * 1024


def test_the_limit_follows_the_setting_and_a_body_at_the_limit_passes() -> None:
    def exact(request: httpx.Request) -> Reply:
        size = int(request.url.params["n"])
        return Reply(200, {"Content-Type": "text/plain"}, iter([b"a" * size]))  # chunked

    with local_server(exact) as server:
        registry = _registry(server, max_step_output_bytes=2048)
        try:
            at_limit = registry.invoke(
                "http.request", {"method": "GET", "url": server.url("/?n=2048")}, CTX
            )
            over = registry.invoke(
                "http.request", {"method": "GET", "url": server.url("/?n=2049")}, CTX
            )
        finally:
            registry.close()

    assert at_limit.ok and at_limit.output["body"] == "a" * 2048
    assert over.error is not None
    assert over.error.endswith(f"larger than 2048 bytes, the limit set by {SETTING}")


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw, as some servers send
    ],
)
def test_compressed_bodies_are_decoded(encoding: str, encode: Any) -> None:
    text = '{"words": "' + "compressible " * 500 + '"}'

    def compressed(request: httpx.Request) -> Reply:
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        return Reply(200, headers, encode(text.encode()))

    with local_server(compressed) as server:
        registry = _registry(server)
        try:
            result = registry.invoke("http.request", {"method": "GET", "url": server.url()}, CTX)
        finally:
            registry.close()

    assert result.ok, result.error
    assert result.output["body"] == {"words": "compressible " * 500}
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_an_encoding_that_cannot_be_bounded_fails_the_step() -> None:
    def brotli(request: httpx.Request) -> Reply:
        return Reply(200, {"Content-Encoding": "br"}, b"\x0b\x02\x80hello\x03")

    with local_server(brotli) as server:
        registry = _registry(server)
        try:
            result = registry.invoke("http.request", {"method": "GET", "url": server.url()}, CTX)
        finally:
            registry.close()

    assert result.error == (
        f"http.request: GET {server.url()}: the response has content-encoding 'br'; "
        "accepted: gzip, deflate"
    )


def test_webhook_and_llm_replies_are_bounded_too(big: LocalServer) -> None:
    hook_url = big.url("/chunked")
    hook, _ = _measured(_registry(big), "webhook.send", {"url": hook_url, "payload": {"a": 1}})
    chat_params = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    }

    def chat_reply(request: httpx.Request) -> Reply:
        return Reply(200, {"Content-Type": "application/json"}, _thirty_mb())

    with local_server(chat_reply) as llm:
        registry = build_default_registry(Settings(llm_base_url=llm.url("/v1")))
        chat, peak = _measured(registry, "llm.chat", chat_params)

    assert hook.error == f"webhook.send: POST {hook_url}: {LIMIT_WORDS}{SETTING}"
    assert chat.error == (
        f"llm.chat: POST {llm.url('/v1/chat/completions')}: {LIMIT_WORDS}{SETTING}"
    )
    assert peak < 8 * 1024 * 1024


def test_a_body_that_does_not_decompress_fails_the_step() -> None:
    def broken(request: httpx.Request) -> Reply:
        return Reply(200, {"Content-Encoding": "gzip"}, b"\x1f\x8b not really gzip")

    with local_server(broken) as server:
        registry = _registry(server)
        try:
            result = registry.invoke("http.request", {"method": "GET", "url": server.url()}, CTX)
        finally:
            registry.close()

    assert result.error is not None
    assert result.error.startswith(
        f"http.request: GET {server.url()}: the response body does not decompress:"
    )
