"""What a skill gives back, and what it is told about the step it runs in.

A skill is any callable ``(params, context) -> SkillResult``. A result with ``error`` set is
a failed step exactly like a raised :class:`runkernel.errors.SkillError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    def to_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass(frozen=True, slots=True)
class SkillResult:
    """The output of one skill call. ``cost_micros`` is integer micro-dollars."""

    output: Any = None
    usage: Usage = field(default_factory=Usage)
    cost_micros: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class SkillContext:
    """Where a skill call happens; skills use it for logging, idempotency keys and deadlines."""

    run_id: str
    tenant_id: str
    step_id: str
    attempt: int
    try_number: int = 1

    @property
    def idempotency_key(self) -> str:
        """``<run_id>/<step_id>``: the same on every try of the step and every attempt of the
        run. A step's side effect is at-least-once (after a crash the call in flight is made
        again), so a skill passes this on for the receiver to drop the repeat."""
        return f"{self.run_id}/{self.step_id}"


@dataclass(frozen=True, slots=True)
class Lowered:
    """A skill's params lowered to fit what is left of a budget (on_budget cap)."""

    params: dict[str, Any]
    max_tokens: int  # what the call may now produce
    note: str  # why, stored with the step's input
