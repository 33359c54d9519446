"""``webhook.send``: POST a signed JSON payload, through the egress guard.

Params: ``{"url", "payload", "headers"?, "timeout_s"?}``; output ``{"status", "body"}``.
The body is the payload as compact JSON with sorted keys. Headers added:

- ``X-Runkernel-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``, keyed with
  ``settings.webhook_secret``; receivers check it with :func:`verify_signature`.
- ``X-Runkernel-Timestamp``: Unix seconds when the request was signed. It is *not* part
  of the signed bytes.
- ``X-Runkernel-Idempotency-Key: <run_id>/<step_id>`` (the step's ``idempotency_key``):
  the same on every retry of the step and after a crash, when the call in flight is made
  again, so a receiver can drop the duplicates that at-least-once delivery brings.

These win over caller headers of the same name. A non-2xx answer fails the step. The URL
must pass the egress guard (see :mod:`.http`), redirects are not followed, and the answer
is read up to ``RUNKERNEL_MAX_STEP_OUTPUT_BYTES``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from runkernel.adapters.skills._checks import check_at_call, check_keys
from runkernel.adapters.skills.egress import Egress
from runkernel.adapters.skills.http import (
    DEFAULT_TIMEOUT_S,
    check_headers,
    check_timeout,
    check_url,
    decode_body,
)
from runkernel.adapters.telemetry.redaction import redact_url
from runkernel.domain.skills import SkillContext, SkillResult
from runkernel.errors import SkillError

NAME = "webhook.send"
SIGNATURE_HEADER = "X-Runkernel-Signature"
TIMESTAMP_HEADER = "X-Runkernel-Timestamp"
IDEMPOTENCY_HEADER = "X-Runkernel-Idempotency-Key"
_PREFIX = "sha256="


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes | SecretStr, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex>``."""
    return _PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes | SecretStr, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of exactly ``body`` under ``secret``.

    The comparison takes the same time wherever the strings differ, so an attacker cannot
    learn the signature byte by byte.
    """
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def encode_payload(payload: Any) -> bytes:
    """Canonical bytes of ``payload``: compact, sorted keys, ASCII-only."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("ascii")


class WebhookSkill:
    def __init__(self, egress: Egress, secret: SecretStr) -> None:
        self._egress = egress
        self._secret = secret

    @staticmethod
    def validate(params: Mapping[str, Any], *, templates: bool = True) -> None:
        check_keys(params, ("url", "payload"), ("headers", "timeout_s"))
        check_url(params["url"], templates)
        check_headers(params.get("headers"), templates)
        if "timeout_s" in params:
            check_timeout(params["timeout_s"], templates)

    def __call__(self, params: dict[str, Any], context: SkillContext) -> SkillResult:
        check_at_call(NAME, self.validate, params)
        url = params["url"]
        try:
            body = encode_payload(params["payload"])
        except (TypeError, ValueError) as exc:
            raise SkillError(f"{NAME}: payload is not JSON: {exc}") from exc
        own = {
            "content-type",
            SIGNATURE_HEADER.lower(),
            TIMESTAMP_HEADER.lower(),
            IDEMPOTENCY_HEADER.lower(),
        }
        headers = {
            **{k: v for k, v in (params.get("headers") or {}).items() if k.lower() not in own},
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            TIMESTAMP_HEADER: str(int(time.time())),
            IDEMPOTENCY_HEADER: context.idempotency_key,
        }
        response = self._egress.send(
            NAME,
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=params.get("timeout_s", DEFAULT_TIMEOUT_S),
        )
        output = {"status": response.status_code, "body": decode_body(response)}
        if response.is_success:
            return SkillResult(output=output)
        return SkillResult(
            output=output,
            error=f"{NAME}: POST {redact_url(url)} answered HTTP {response.status_code}",
        )
