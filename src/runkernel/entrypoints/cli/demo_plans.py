"""The runs the demo submits: each a real plan with the outcome it must reach.

Everything they call lives on 127.0.0.1 (the ``echo-1`` model is offline), so the demo
needs no network and no keys; the outcomes are the kernel's real behaviour, not staged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scenario:
    title: str
    expect: str  # the final status the kernel must reach
    plan: dict[str, Any]
    cancel: bool = False  # cancel right after submitting

    @property
    def skills(self) -> str:
        return " → ".join(step["skill"] for step in self.plan["steps"])


def _chat(step_id: str, content: str, **extra: Any) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "skill": "llm.chat",
        "params": {
            "model": "echo-1",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 64,
        },
        **extra,
    }


def _get(step_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "skill": "http.request",
        "params": {"method": "GET", "url": url, "timeout_s": 5},
        **extra,
    }


def scenarios(local_url: str) -> list[Scenario]:
    """``local_url`` is the demo's receiver (quote, outage, slow and webhook endpoints)."""
    return [
        Scenario(
            "LLM chain with templates",
            "succeeded",
            {
                "steps": [
                    _chat("ask", "summarize governed agent runs in five words"),
                    {
                        "step_id": "pick",
                        "skill": "json.transform",
                        "params": {"data": "{{steps.ask.output}}", "expression": "content"},
                    },
                    _chat("refine", "refine: {{steps.pick.output}}", output_key="answer"),
                ]
            },
        ),
        Scenario(
            "two answers joined",
            "succeeded",
            {
                "steps": [
                    _chat("pro", "budgets are enforced during the run"),
                    _chat("con", "incidents are recorded for every failure"),
                    {
                        "step_id": "join",
                        "skill": "json.transform",
                        "params": {
                            "data": {
                                "a": "{{steps.pro.output.content}}",
                                "b": "{{steps.con.output.content}}",
                            },
                            "expression": "join(' | ', [a, b])",
                        },
                    },
                ]
            },
        ),
        Scenario(
            "HTTP fetch, then LLM",
            "succeeded",
            {
                "steps": [
                    _get("fetch", f"{local_url}/quote"),
                    _chat("comment", "comment on: {{steps.fetch.output.body.quote}}"),
                ]
            },
        ),
        Scenario(
            "upstream 500, on_error abort",
            "failed",
            {
                "steps": [
                    _get("fetch", f"{local_url}/outage", retries=1, on_error="abort"),
                    _chat("never", "this step must not run"),
                ]
            },
        ),
        Scenario(
            "upstream 500, on_error continue",
            "succeeded",
            {
                "steps": [
                    _get("fetch", f"{local_url}/outage", on_error="continue"),
                    _chat("fallback", "the upstream was down; answering from memory"),
                ]
            },
        ),
        Scenario(
            "signed webhook",
            "succeeded",
            {
                "steps": [
                    _chat("draft", "a run finished under budget"),
                    {
                        "step_id": "notify",
                        "skill": "webhook.send",
                        "params": {
                            "url": f"{local_url}/webhook",
                            "payload": {"event": "demo", "text": "{{steps.draft.output.content}}"},
                        },
                    },
                ]
            },
        ),
        Scenario(
            "slow call, cancelled",
            "cancelled",
            {
                "steps": [
                    _get("wait", f"{local_url}/slow?ms=1500"),
                    _chat("after", "this step must not run"),
                ]
            },
            cancel=True,
        ),
    ]
