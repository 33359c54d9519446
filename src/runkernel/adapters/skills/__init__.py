"""Skills: the registry and the built-ins ``llm.chat``, ``http.request``, ``json.transform``
and ``webhook.send``.

A skill that makes HTTP calls gets them from an :class:`Egress` (guarded, bounded, no state
shared between calls); nothing else in this package builds an HTTP client.
"""

from __future__ import annotations

from runkernel.adapters.skills import transform
from runkernel.adapters.skills.egress import Egress
from runkernel.adapters.skills.http import HttpRequestSkill
from runkernel.adapters.skills.llm import ChatSkill
from runkernel.adapters.skills.registry import SkillRegistry
from runkernel.adapters.skills.webhook import WebhookSkill, verify_signature
from runkernel.config import Settings

__all__ = ["Egress", "SkillRegistry", "build_default_registry", "verify_signature"]


def build_default_registry(settings: Settings, *, egress: Egress | None = None) -> SkillRegistry:
    """A registry with the four built-ins. Their HTTP calls pass ``egress``, by default the
    guard built from ``settings`` (``RUNKERNEL_EGRESS_ALLOW`` is parsed here, at startup, and
    a bad entry raises ``ConfigurationError``)."""
    egress = egress or Egress.from_settings(settings)
    registry = SkillRegistry()
    chat = ChatSkill(settings, egress)
    registry.register(
        "llm.chat",
        chat,
        validate=chat.validate,
        description="one LLM chat completion",
        estimate=chat.estimate,
        lower=chat.lower,
    )
    http = HttpRequestSkill(egress)
    registry.register("http.request", http, validate=http.validate, description="one HTTP call")
    registry.register(
        "json.transform",
        transform.transform,
        validate=transform.validate,
        description="a JMESPath expression applied to data",
    )
    webhook = WebhookSkill(egress, settings.webhook_secret)
    registry.register(
        "webhook.send", webhook, validate=webhook.validate, description="POST a signed JSON body"
    )
    return registry
