"""``llm.chat``: one chat completion, from the offline ``echo-1`` model or an
OpenAI-compatible ``POST {llm_base_url}/chat/completions``.

Params: ``{"model", "messages": [{"role", "content"}], "max_tokens", "temperature"?}``.
Output: ``{"content", "usage": {"input_tokens", "output_tokens"}, "cost_usd"}``; the
:class:`SkillResult` also carries ``usage`` and integer ``cost_micros``.

``echo-1`` is deterministic: it answers the content of the last user message, cut to
``max_tokens`` words, and counts one token per whitespace-separated word.

Provider calls go through the egress guard like every HTTP skill, with one exception: the
host and port of ``llm_base_url`` are allowed whatever their address (a model served on
127.0.0.1 or in the private network is common). That URL is the operator's setting, never a
plan's, and redirects are not followed, so a plan cannot steer the call elsewhere. The reply
is read up to ``RUNKERNEL_MAX_STEP_OUTPUT_BYTES``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from runkernel.adapters.skills._checks import (
    check_at_call,
    check_keys,
    check_number,
    fail,
    skip,
)
from runkernel.adapters.skills.egress import Egress
from runkernel.adapters.skills.pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    cost_micros,
    estimated_input_tokens,
    price_of,
    worst_case_micros,
)
from runkernel.adapters.telemetry.redaction import redact_url
from runkernel.config import Settings
from runkernel.domain import budgets
from runkernel.domain.money import micros_to_usd
from runkernel.domain.skills import Lowered, SkillContext, SkillResult, Usage
from runkernel.errors import SkillError

log = logging.getLogger(__name__)

NAME = "llm.chat"
ECHO_MODEL = "echo-1"
ROLES = ("system", "user", "assistant", "tool")
MAX_TOKENS_LIMIT = 100_000
_BODY_PREVIEW = 200


class ChatSkill:
    """The ``llm.chat`` skill; call it as a skill function, and register ``validate`` with it."""

    def __init__(
        self,
        settings: Settings,
        egress: Egress,
        *,
        prices: Mapping[str, ModelPrice] = DEFAULT_PRICES,
    ) -> None:
        self._settings = settings
        self._url = settings.llm_base_url.rstrip("/") + "/chat/completions"
        self._egress = egress.allowing(self._url)
        if settings.llm_base_url != Settings.model_fields["llm_base_url"].default:
            log.warning(
                "egress guard: llm.chat may reach %s whatever its address (RUNKERNEL_LLM_BASE_URL)",
                redact_url(settings.llm_base_url),
            )
        self._prices = prices

    def validate(self, params: Mapping[str, Any], *, templates: bool = True) -> None:
        check_keys(params, ("model", "messages", "max_tokens"), ("temperature",))
        model = params["model"]
        if not skip(model, templates):
            if not isinstance(model, str):
                fail(f"model must be a string, got {model!r}")
            price_of(model, self._prices)
        _check_messages(params["messages"], templates)
        check_number(
            "max_tokens",
            params["max_tokens"],
            low=1,
            high=MAX_TOKENS_LIMIT,
            integer=True,
            templates=templates,
        )
        if "temperature" in params:
            check_number(
                "temperature",
                params["temperature"],
                low=0,
                high=2,
                integer=False,
                templates=templates,
            )

    def estimate(self, params: Mapping[str, Any]) -> int:
        """The worst-case cost of one call with the rendered ``params``, in micros."""
        texts = [str(m.get("content", "")) for m in params["messages"]]
        return worst_case_micros(params["model"], texts, int(params["max_tokens"]), self._prices)

    def lower(self, params: Mapping[str, Any], per_call_micros: int) -> Lowered | None:
        """``params`` with ``max_tokens`` cut to what ``per_call_micros`` pays for on top of
        the prompt's bound (never raised); None when the skill could not be lowered."""
        price = price_of(params["model"], self._prices)
        texts = [str(m.get("content", "")) for m in params["messages"]]
        prompt = estimated_input_tokens(texts)
        affordable = budgets.output_tokens_affordable(
            per_call_micros, prompt, price.input_micros_per_mtok, price.output_micros_per_mtok
        )
        asked = int(params["max_tokens"])
        tokens = min(asked, affordable)
        note = (
            f"max_tokens lowered from {asked} to {tokens}: what is left of the budget pays "
            f"for {per_call_micros} micros a call (on_budget cap)"
        )
        return Lowered({**params, "max_tokens": tokens}, tokens, note)

    def __call__(self, params: dict[str, Any], context: SkillContext) -> SkillResult:
        check_at_call(NAME, self.validate, params)
        model: str = params["model"]
        if model == ECHO_MODEL:
            content, usage = _echo(params["messages"], params["max_tokens"])
        else:
            content, usage = self._complete(params)
        cost = cost_micros(model, usage, self._prices)
        output = {"content": content, "usage": usage.to_dict(), "cost_usd": micros_to_usd(cost)}
        return SkillResult(output=output, usage=usage, cost_micros=cost)

    def _complete(self, params: Mapping[str, Any]) -> tuple[str, Usage]:
        headers = {}
        if self._settings.llm_api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.llm_api_key.get_secret_value()}"
        body = {
            key: params[key]
            for key in ("model", "messages", "max_tokens", "temperature")
            if key in params
        }
        response = self._egress.send(
            NAME,
            "POST",
            self._url,
            json=body,
            headers=headers,
            timeout=self._settings.llm_timeout_s,
        )
        if not response.is_success:
            preview = response.text[:_BODY_PREVIEW]
            raise SkillError(f"{NAME}: provider answered HTTP {response.status_code}: {preview}")
        return _parse_completion(response)


def _check_messages(messages: object, templates: bool) -> None:
    if skip(messages, templates):
        return
    if not isinstance(messages, list) or not messages:
        fail("messages must be a non-empty list of {role, content} objects")
    for index, message in enumerate(messages):
        if skip(message, templates):
            continue
        if not isinstance(message, dict):
            fail(f"messages[{index}] must be an object, got {message!r}")
        role, content = message.get("role"), message.get("content")
        if not skip(role, templates) and role not in ROLES:
            fail(f"messages[{index}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            fail(f"messages[{index}].content must be a string, got {content!r}")


def _words(text: str) -> list[str]:
    return text.split()


def _echo(messages: list[dict[str, str]], max_tokens: int) -> tuple[str, Usage]:
    user_turns = [m["content"] for m in messages if m["role"] == "user"]
    answer = " ".join(_words(user_turns[-1])[:max_tokens]) if user_turns else ""
    input_tokens = sum(len(_words(m["content"])) for m in messages)
    return answer, Usage(input_tokens=input_tokens, output_tokens=len(_words(answer)))


def _parse_completion(response: httpx.Response) -> tuple[str, Usage]:
    """Read content and usage of an OpenAI-style reply; anything else is a ``SkillError``."""
    try:
        reply = response.json()
        content = reply["choices"][0]["message"]["content"]
        usage = reply["usage"]
        tokens = usage["prompt_tokens"], usage["completion_tokens"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        preview = response.text[:_BODY_PREVIEW]
        raise SkillError(f"{NAME}: malformed provider reply ({exc!r}): {preview}") from exc
    # A reply without text (e.g. a refusal) has content null; that is an empty answer.
    if content is None:
        content = ""
    if not isinstance(content, str) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in tokens
    ):
        preview = response.text[:_BODY_PREVIEW]
        raise SkillError(f"{NAME}: malformed provider reply: {preview}")
    return content, Usage(input_tokens=tokens[0], output_tokens=tokens[1])
