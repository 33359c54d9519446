"""Request and response bodies of the API (pydantic models, so they document themselves).

Money is USD as JSON numbers at this edge and integer micro-dollars everywhere inside;
conversion goes through ``runkernel.domain.money``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from runkernel.domain.money import SMALLEST_USD, usd_to_micros
from runkernel.domain.records import RunBudget
from runkernel.domain.storable import check_storable

# Bounds keep every amount inside a signed 64-bit column (1e9 USD = 1e15 micros).
MAX_USD = 1_000_000_000
MAX_COUNT = 2**53
MAX_TIMEOUT_S = 30 * 24 * 3600
ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"


def _countable(usd: float) -> float:
    usd_to_micros(usd)  # a non-zero amount that rounds to 0 micros is a ValueError
    return usd


Usd = Annotated[
    float,
    Field(ge=0, le=MAX_USD, allow_inf_nan=False),
    AfterValidator(_countable),
    # 0, or an amount that counts as at least one micro-dollar.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "const": 0},
                {"type": "number", "minimum": float(SMALLEST_USD), "maximum": MAX_USD},
            ]
        }
    ),
]

ECHO_PLAN_EXAMPLE = {
    "steps": [
        {
            "step_id": "ask",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 50,
            },
        }
    ]
}


class Body(BaseModel):
    """A request body: unknown fields are errors (a typo must not silently drop a limit),
    types are strict (``"5"`` is not a number) and everything in it must be storable."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_storable(data)
        return data


# -- agents --------------------------------------------------------------------------
class AgentCreate(Body):
    name: str = Field(min_length=1, max_length=200, examples=["support-bot"])
    budget_usd: Usd = Field(description="what all runs of the agent may spend, in USD")


class AgentOut(BaseModel):
    id: str
    name: str
    budget_usd: float
    spent_usd: float
    created_at: str


class AgentList(BaseModel):
    agents: list[AgentOut]


# -- runs ----------------------------------------------------------------------------
class BudgetIn(Body):
    max_cost_usd: Usd | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    max_steps: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)] | None = None

    def to_budget(self) -> RunBudget:
        cost = None if self.max_cost_usd is None else usd_to_micros(self.max_cost_usd)
        return RunBudget(cost, self.max_tokens, self.max_steps, self.timeout_s)


class RunCreate(Body):
    agent_id: str = Field(min_length=1, max_length=64)
    plan: dict[str, Any] = Field(
        description='{"steps": [{"step_id", "skill", "params", "on_error", "retries", '
        '"output_key"}]}',
        examples=[ECHO_PLAN_EXAMPLE],
    )
    budget: BudgetIn | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None


class RunAccepted(BaseModel):
    id: str
    status: str
    phase: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int


class BudgetOut(BaseModel):
    max_cost_usd: float | None
    max_tokens: int | None
    max_steps: int | None
    timeout_s: float | None


class TransitionOut(BaseModel):
    from_phase: str | None
    from_status: str | None
    to_phase: str
    to_status: str
    at: str
    reason: str


class StepOut(BaseModel):
    step_id: str
    skill: str
    status: str
    output: Any
    usage: UsageOut
    cost_usd: float
    attempt: int
    tries: int
    error: str | None
    duration_ms: int


class RunSummary(BaseModel):
    id: str
    agent_id: str
    status: str
    phase: str
    attempt: int
    cost_usd: float
    usage: UsageOut
    error: ErrorDetail | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class RunDetail(RunSummary):
    cost_micros: int
    budget: BudgetOut
    plan: dict[str, Any] = Field(description="the plan as validated, with defaults filled in")
    output: Any = Field(
        description="outputs of the steps with an output_key, by key; else the last step's"
    )
    metadata: dict[str, Any]
    idempotency_key: str | None
    cancel_requested: bool
    observability_status: str
    risk_level: str
    updated_at: str
    transitions: list[TransitionOut]
    steps: list[StepOut]


# -- errors --------------------------------------------------------------------------
class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for an error answer."""
    return {"model": ErrorResponse, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_doc("missing or unknown API key"),
    403: error_doc("the key's tenant is not active"),
    404: error_doc("nothing of that id is visible to this tenant"),
    422: error_doc("invalid request"),
}
