"""Skills: the registry and the built-ins ``llm.chat``, ``http.request``, ``json.transform``
and ``webhook.send``."""

from __future__ import annotations

import httpx

from runkernel.adapters.skills import transform
from runkernel.adapters.skills.http import HttpRequestSkill
from runkernel.adapters.skills.llm import ChatSkill
from runkernel.adapters.skills.registry import SkillRegistry
from runkernel.adapters.skills.webhook import WebhookSkill, verify_signature
from runkernel.config import Settings

__all__ = ["SkillRegistry", "build_default_registry", "verify_signature"]


def build_default_registry(
    settings: Settings, *, http_client: httpx.Client | None = None
) -> SkillRegistry:
    """A registry with the four built-ins, sharing one HTTP client (one connection pool).

    A client passed in stays the caller's to close; one made here is closed by
    ``registry.close()``.
    """
    client = http_client
    registry = SkillRegistry()
    if client is None:
        client = httpx.Client()
        registry.on_close(client.close)
    chat = ChatSkill(settings, client)
    registry.register(
        "llm.chat", chat, validate=chat.validate, description="one LLM chat completion"
    )
    http = HttpRequestSkill(client)
    registry.register("http.request", http, validate=http.validate, description="one HTTP call")
    registry.register(
        "json.transform",
        transform.transform,
        validate=transform.validate,
        description="a JMESPath expression applied to data",
    )
    webhook = WebhookSkill(client, settings.webhook_secret)
    registry.register(
        "webhook.send", webhook, validate=webhook.validate, description="POST a signed JSON body"
    )
    return registry
