"""The benchmark's work, shared by every system measured: a chain of ``echo-1``
``llm.chat`` calls in which each step echoes the previous step's answer."""

from __future__ import annotations

from typing import Any

FIRST_MESSAGE = "hello governed world"
MAX_TOKENS = 50


def chat_params(content: str) -> dict[str, Any]:
    """``llm.chat`` params asking the offline ``echo-1`` model to answer ``content``."""
    return {
        "model": "echo-1",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": MAX_TOKENS,
    }


def step_id(index: int) -> str:
    return f"s{index}"


def next_message(previous_answer: str) -> str:
    return f"echo: {previous_answer}"


def echo_chain_plan(steps: int) -> dict[str, Any]:
    """A runkernel plan of ``steps`` chat calls, each reading its predecessor by template."""
    messages = [FIRST_MESSAGE] + [
        next_message("{{steps." + step_id(index - 1) + ".output.content}}")
        for index in range(1, steps)
    ]
    return {
        "steps": [
            {"step_id": step_id(index), "skill": "llm.chat", "params": chat_params(message)}
            for index, message in enumerate(messages)
        ]
    }
