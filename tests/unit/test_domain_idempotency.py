"""The request fingerprint an idempotency key is bound to: the same request in any
spelling gives the same fingerprint, any change to what the run does gives another."""

from __future__ import annotations

from typing import Any

import pytest

from runkernel.domain.idempotency import request_fingerprint
from runkernel.domain.records import RunBudget

PLAN = {"steps": [{"step_id": "a", "skill": "json.transform", "params": {"x": 1, "y": [1, 2]}}]}


def fingerprint(**changes: Any) -> str:
    request: dict[str, Any] = {
        "agent_id": "agt_1",
        "plan": PLAN,
        "budget": RunBudget(max_cost_micros=500_000, max_steps=3),
        "metadata": {"order": 42, "tags": ["a"]},
    }
    request.update(changes)
    return request_fingerprint(**request)


def test_a_fingerprint_is_a_sha256_hex_digest_and_stable() -> None:
    first = fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    assert fingerprint() == first


def test_key_order_and_an_absent_metadata_do_not_matter() -> None:
    reordered = {
        "steps": [{"params": {"y": [1, 2], "x": 1}, "skill": "json.transform", "step_id": "a"}]
    }
    assert fingerprint(plan=reordered) == fingerprint()
    assert fingerprint(metadata={"tags": ["a"], "order": 42}) == fingerprint()
    assert fingerprint(metadata=None) == fingerprint(metadata={})


@pytest.mark.parametrize(
    "change",
    [
        {"agent_id": "agt_2"},
        {"plan": {"steps": [{**PLAN["steps"][0], "params": {"x": 2, "y": [1, 2]}}]}},
        {"plan": {"steps": [{**PLAN["steps"][0], "params": {"x": 1, "y": [2, 1]}}]}},
        {"budget": RunBudget(max_cost_micros=500_001, max_steps=3)},
        {"budget": RunBudget()},
        {"metadata": {"order": 43, "tags": ["a"]}},
        {"metadata": None},
    ],
)
def test_any_change_to_the_request_changes_the_fingerprint(change: dict[str, Any]) -> None:
    assert fingerprint(**change) != fingerprint()
