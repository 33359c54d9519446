"""The fingerprint of a run submission, which an idempotency key is bound to.

A key names one request: a repeat of the same request returns the run it created, while
the same key on a different request (another agent, plan, budget or metadata) is a client
error, never silently answered with a run that does something else. The fingerprint is the
SHA-256 of the request's canonical JSON: the normalized plan and the budget in micros, so
spellings of one request (``0.1`` or ``0.10`` USD, a default written out or left off) agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from runkernel.domain.records import RunBudget


def request_fingerprint(
    *,
    agent_id: str,
    plan: Mapping[str, Any],
    budget: RunBudget,
    metadata: Mapping[str, Any] | None,
) -> str:
    canonical = json.dumps(
        {
            "agent_id": agent_id,
            "plan": plan,
            "budget": budget.to_dict(),
            "metadata": dict(metadata or {}),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
