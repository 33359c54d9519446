from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from ipaddress import ip_address
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from runkernel.adapters.skills import Egress, SkillRegistry, build_default_registry
from runkernel.adapters.skills.egress_rules import EgressRules
from runkernel.adapters.skills.pricing import DEFAULT_PRICES, cost_micros, known_models
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext, SkillResult, Usage
from runkernel.errors import PlanValidationError
from support.http_server import local_server

CTX = SkillContext(run_id="r", tenant_id="t", step_id="s", attempt=1)
LOOPBACK = ip_address("127.0.0.1")
Handler = Callable[[httpx.Request], httpx.Response]


def chat(model: str, *contents: tuple[str, str], max_tokens: int = 100) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": role, "content": text} for role, text in contents],
        "max_tokens": max_tokens,
    }


@pytest.fixture
def offline() -> Iterator[SkillRegistry]:
    registry = build_default_registry(Settings())
    yield registry
    registry.close()


@contextmanager
def provider(handler: Handler, **settings: Any) -> Iterator[tuple[SkillRegistry, str]]:
    """A registry whose ``llm_base_url`` is ``http://llm.test:<port>/v1/``, a name that only
    this test's resolver knows (it gives 127.0.0.1, where ``handler`` answers). The egress
    guard lets llm.chat reach it without an allow entry: the operator configured that URL."""
    with local_server(handler) as server:
        base = f"http://llm.test:{server.port}/v1/"
        egress = Egress(
            EgressRules(), max_body_bytes=1 << 20, resolver=lambda host, port: [LOOPBACK]
        )
        registry = build_default_registry(Settings(llm_base_url=base, **settings), egress=egress)
        try:
            yield registry, base
        finally:
            registry.close()


# --- echo-1 ----------------------------------------------------------------------------


def test_echo_answers_last_user_message_cut_to_max_tokens(offline: SkillRegistry) -> None:
    params = chat(
        "echo-1",
        ("system", "be brief"),
        ("user", "first question"),
        ("assistant", "an answer"),
        ("user", "  the   second question here "),
        max_tokens=3,
    )

    result = offline.invoke("llm.chat", params, CTX)

    # input: 2 + 2 + 2 + 4 words; output: 3 words. Cost: 10 x $1/M + 3 x $2/M = 16 micros.
    assert result == SkillResult(
        output={
            "content": "the second question",
            "usage": {"input_tokens": 10, "output_tokens": 3},
            "cost_usd": 0.000016,
        },
        usage=Usage(input_tokens=10, output_tokens=3),
        cost_micros=16,
    )


def test_echo_is_deterministic(offline: SkillRegistry) -> None:
    params = chat("echo-1", ("user", "same words every time"))

    results = [offline.invoke("llm.chat", params, CTX) for _ in range(3)]

    assert results[0].output["content"] == "same words every time"
    assert results[0] == results[1] == results[2]


def test_echo_without_user_message_answers_empty(offline: SkillRegistry) -> None:
    result = offline.invoke("llm.chat", chat("echo-1", ("system", "one two")), CTX)

    assert result.output["content"] == ""
    assert result.usage == Usage(input_tokens=2, output_tokens=0)
    assert result.cost_micros == 2


def test_unresolved_template_at_call_time_fails_the_step(offline: SkillRegistry) -> None:
    params = chat("echo-1", ("user", "hi"))
    params["max_tokens"] = "{{steps.n.output}}"

    result = offline.invoke("llm.chat", params, CTX)

    assert result.error is not None
    assert result.error.startswith("llm.chat: max_tokens must be an integer in [1, 100000]")


# --- pricing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "usage", "micros"),
    [
        ("gpt-4o-mini", Usage(3, 0), 0),  # 0.45 micros rounds down
        ("gpt-4o-mini", Usage(4, 0), 1),  # 0.6 rounds up
        ("gpt-4.1-nano", Usage(5, 0), 1),  # exactly 0.5 rounds half up
        ("gpt-4.1-nano", Usage(15, 0), 2),  # 1.5 -> 2
        ("gpt-4o", Usage(1_000_000, 1_000_000), 12_500_000),
        ("gpt-4o-mini", Usage(1_000, 500), 450),
        ("echo-1", Usage(0, 0), 0),
    ],
)
def test_cost_micros_integer_math(model: str, usage: Usage, micros: int) -> None:
    assert cost_micros(model, usage) == micros


@given(
    model=st.sampled_from(sorted(DEFAULT_PRICES)),
    tokens_in=st.integers(0, 10**9),
    tokens_out=st.integers(0, 10**9),
)
def test_cost_micros_matches_decimal_round_half_up(
    model: str, tokens_in: int, tokens_out: int
) -> None:
    price = DEFAULT_PRICES[model]
    exact = (
        Decimal(tokens_in) * price.input_micros_per_mtok
        + Decimal(tokens_out) * price.output_micros_per_mtok
    ) / 1_000_000
    expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    assert cost_micros(model, Usage(tokens_in, tokens_out)) == expected


def test_unknown_model_is_a_plan_error_listing_known_models(offline: SkillRegistry) -> None:
    with pytest.raises(PlanValidationError) as info:
        offline.validate("llm.chat", chat("gpt-9", ("user", "hi")))

    assert str(info.value) == f"llm.chat: unknown model 'gpt-9'; known: {', '.join(known_models())}"
    assert {"echo-1", "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"} <= set(known_models())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be one of"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content must be a string"),
        ({"messages": ["hello"]}, "messages[0] must be an object"),
        ({"max_tokens": 0}, "max_tokens must be an integer"),
        ({"max_tokens": 100_001}, "max_tokens must be an integer"),
        ({"max_tokens": True}, "max_tokens must be an integer"),
        ({"max_tokens": 2.0}, "max_tokens must be an integer"),
        ({"temperature": 2.5}, "temperature must be a number in [0, 2]"),
        ({"temperature": "hot"}, "temperature must be a number in [0, 2]"),
        ({"model": 4}, "model must be a string"),
    ],
)
def test_validator_rejects_bad_params(
    offline: SkillRegistry, change: dict[str, Any], message: str
) -> None:
    params = {**chat("echo-1", ("user", "hi")), **change}

    with pytest.raises(PlanValidationError) as info:
        offline.validate("llm.chat", params)

    assert message in str(info.value)


def test_validator_accepts_good_params(offline: SkillRegistry) -> None:
    params = {**chat("gpt-4o-mini", ("system", "s"), ("user", "u")), "temperature": 0.2}

    offline.validate("llm.chat", params)
    offline.validate("llm.chat", {**params, "max_tokens": 100_000, "temperature": 0})


# --- OpenAI-compatible provider -------------------------------------------------------------


def test_openai_compatible_success() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"role": "assistant", "content": "Paris."}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
            },
        )

    params = {
        **chat("gpt-4o-mini", ("user", "Capital of France?"), max_tokens=20),
        "temperature": 0.0,
    }
    with provider(handler, llm_api_key=SecretStr("sk-test")) as (registry, base):
        result = registry.invoke("llm.chat", params, CTX)

    assert result == SkillResult(
        output={
            "content": "Paris.",
            "usage": {"input_tokens": 1000, "output_tokens": 500},
            "cost_usd": 0.00045,
        },
        usage=Usage(1000, 500),
        cost_micros=450,  # 1000 x $0.15/M + 500 x $0.60/M
    )
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == base + "chat/completions"  # Host: the configured name
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == params


def test_openai_compatible_without_key_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": None}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 0},
            },
        )

    with provider(handler) as (registry, _):
        result = registry.invoke("llm.chat", chat("gpt-4o", ("user", "hi")), CTX)

    assert result.ok
    assert result.output["content"] == ""
    assert "authorization" not in seen[0].headers


def test_openai_compatible_server_error_fails_the_step() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="upstream overloaded" + "x" * 1000)

    with provider(handler) as (registry, _):
        result = registry.invoke("llm.chat", chat("gpt-4o", ("user", "hi")), CTX)

    assert result.output is None
    assert result.cost_micros == 0
    assert result.error is not None
    assert result.error.startswith("llm.chat: provider answered HTTP 500: upstream overloaded")
    assert len(result.error) < 300  # the body is cut, not copied whole


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json={"choices": [], "usage": {}}),
        httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]}),
        httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": 42}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            },
        ),
        httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "x"}}],
                "usage": {"prompt_tokens": "1", "completion_tokens": 1},
            },
        ),
    ],
)
def test_openai_compatible_malformed_reply_fails_the_step(reply: httpx.Response) -> None:
    with provider(lambda request: reply) as (registry, _):
        result = registry.invoke("llm.chat", chat("gpt-4o", ("user", "hi")), CTX)

    assert result.error is not None
    assert result.error.startswith("llm.chat: malformed provider reply")


def test_openai_compatible_connection_error_fails_the_step() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Closed: nothing listens. The base URL's host needs no allow entry.
    registry = build_default_registry(Settings(llm_base_url=f"http://127.0.0.1:{port}/v1"))
    try:
        result = registry.invoke("llm.chat", chat("gpt-4o", ("user", "hi")), CTX)
    finally:
        registry.close()

    assert result.error == (
        f"llm.chat: POST http://127.0.0.1:{port}/v1/chat/completions failed: "
        f"could not connect to 127.0.0.1:{port}"
    )
