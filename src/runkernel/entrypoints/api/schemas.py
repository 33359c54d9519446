"""Request and response bodies of the API (pydantic models, so they document themselves).

Money is USD as JSON numbers at this edge and integer micro-dollars everywhere inside;
conversion goes through ``runkernel.domain.money``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from runkernel.domain.money import MAX_USD, SMALLEST_USD, usd_to_micros
from runkernel.domain.numbers import as_integer
from runkernel.domain.records import RunBudget
from runkernel.domain.risk import RiskLevel
from runkernel.domain.runs import Phase, RunStatus
from runkernel.domain.storable import check_storable
from runkernel.entrypoints.api.openapi import PLAN
from runkernel.entrypoints.api.schema_rules import NON_BLANK_TEXT, TEXT, storable_object

MAX_COUNT = 2**53
MAX_TIMEOUT_S = 30 * 24 * 3600
ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
# What a step and a run's observability record: strings the executor and the trace sink
# write, not domain enums.
STEP_STATUSES = ("succeeded", "failed")
OBSERVABILITY_STATUSES = ("OK", "DEGRADED", "FAILED")


def _countable(usd: float) -> float:
    usd_to_micros(usd)  # a non-zero amount that rounds to 0 micros is a ValueError
    return usd


# 0, or an amount that counts as at least one micro-dollar, up to the limit.
USD_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "const": 0},
        {"type": "number", "minimum": float(SMALLEST_USD), "maximum": MAX_USD},
    ]
}
Usd = Annotated[
    float,
    Field(ge=0, le=MAX_USD, allow_inf_nan=False),
    AfterValidator(_countable),
    WithJsonSchema(USD_SCHEMA),
]

# No step_id: each step then gets step<index>, so copies of the example step (as a
# generator filling a long plan makes) still have unique ids.
ECHO_PLAN_EXAMPLE = {
    "steps": [
        {
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
def _integral(value: Any) -> Any:
    integer = as_integer(value)
    return value if integer is None else integer


OnBudgetMode = Literal["terminate", "pause", "cap"]  # domain.budgets.OnBudget's values
ON_BUDGET_DOC = (
    "when a step's reservation does not fit: terminate (the run fails budget_exceeded), "
    "pause (the run pauses BUDGET_WARNING; raise the budget and resume it) or cap (an "
    "llm.chat step runs with max_tokens lowered to what is left, down to "
    "RUNKERNEL_BUDGET_CAP_MIN_TOKENS; anything else terminates)"
)
MAX_CONCURRENT_RUNS = 100_000
ConcurrentRuns = Annotated[int, Field(ge=1, le=MAX_CONCURRENT_RUNS), BeforeValidator(_integral)]


class AgentCreate(Body):
    name: str = Field(
        min_length=1,
        max_length=200,
        examples=["support-bot"],
        description="unique in the tenant; surrounding whitespace is stripped",
        # Documented here, checked by the tenancy service with its own message.
        json_schema_extra={"pattern": NON_BLANK_TEXT},
    )
    budget_usd: Usd = Field(description="what all runs of the agent may spend, in USD")
    on_budget: OnBudgetMode = Field("terminate", description=ON_BUDGET_DOC)
    max_concurrent_runs: ConcurrentRuns | None = Field(
        None,
        description="how many of its runs may execute at once (more wait queued); null: "
        "unlimited; left out: RUNKERNEL_DEFAULT_MAX_CONCURRENT_RUNS",
    )


def _agent_patch_schema(schema: dict[str, Any]) -> None:
    """What the validator below enforces, said by the schema: at least one field, and no
    null except ``max_concurrent_runs`` (where null means unlimited)."""
    schema["minProperties"] = 1
    for name, prop in schema["properties"].items():
        if name != "max_concurrent_runs" and "anyOf" in prop:
            kept = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
            prop.pop("default", None)


class AgentPatch(Body):
    """Only the fields given change; at least one must be."""

    model_config = ConfigDict(json_schema_extra=_agent_patch_schema)

    budget_usd: Usd | None = Field(
        None,
        description="may be set below what is spent: the agent then reserves nothing more",
    )
    on_budget: OnBudgetMode | None = Field(None, description=ON_BUDGET_DOC)
    max_concurrent_runs: ConcurrentRuns | None = Field(None, description="null: unlimited")

    @model_validator(mode="before")
    @classmethod
    def _fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if not data:
                raise ValueError(
                    "nothing to change: give budget_usd, on_budget or max_concurrent_runs"
                )
            nulls = sorted(
                str(k) for k, v in data.items() if v is None and k != "max_concurrent_runs"
            )
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: leave a field out instead of null")
        return data


class AgentOut(BaseModel):
    id: str
    name: str
    budget_usd: float
    spent_usd: float
    reserved_usd: float = Field(
        description="held by steps in flight and by runs not yet final; "
        "a step starts only if spent + reserved + its worst-case cost fits the budget"
    )
    on_budget: OnBudgetMode
    max_concurrent_runs: int | None
    created_at: str


class AgentList(BaseModel):
    agents: list[AgentOut]


# -- runs ----------------------------------------------------------------------------
# An integral JSON number (5 or 5.0) is an integer; strings and bools are not. (The
# bounds sit in the same Annotated: nested, pydantic would print them as "ge"/"le".)
Count = Annotated[int, Field(ge=1, le=MAX_COUNT), BeforeValidator(_integral)]
Version = Annotated[int, Field(ge=1), BeforeValidator(_integral)]


class BudgetIn(Body):
    max_cost_usd: Usd | None = None
    max_tokens: Count | None = None
    max_steps: Count | None = None
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)] | None = None

    def to_budget(self) -> RunBudget:
        cost = None if self.max_cost_usd is None else usd_to_micros(self.max_cost_usd)
        return RunBudget(cost, self.max_tokens, self.max_steps, self.timeout_s)


IdempotencyKey = Annotated[
    str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": TEXT})
]
Metadata = Annotated[dict[str, Any], storable_object("kept with the run, never interpreted")]


class RunCreate(Body):
    agent_id: str = Field(
        min_length=1,
        max_length=64,
        description="one of the tenant's agents",
        json_schema_extra={"pattern": ID_PATTERN},
    )
    # Checked by domain.plans.parse_plan, which names the offending step.
    plan: Annotated[dict[str, Any], PLAN] = Field(examples=[ECHO_PLAN_EXAMPLE])
    budget: BudgetIn | None = None
    idempotency_key: IdempotencyKey | None = Field(
        None,
        description="a repeat with the same key and the same request returns the same run; "
        "the same key with another request is a 409",
    )
    metadata: Metadata | None = None


class RunAccepted(BaseModel):
    id: str
    status: RunStatus
    phase: Phase


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
    from_phase: Phase | None
    from_status: RunStatus | None
    to_phase: Phase
    to_status: RunStatus
    at: str
    reason: str


class PolicyViolationOut(BaseModel):
    type: str = Field(description="BUDGET_EXCEEDED, LIMIT_CHANGED, POLICY_DISABLED, ...")
    message: str


class PolicyCheckOut(BaseModel):
    """A check before a step that paused or ended the run."""

    step_index: int = Field(description="the step the check was before")
    decision: str = Field(json_schema_extra={"enum": ["PAUSE", "TERMINATE"]})
    reason: str
    violations: list[PolicyViolationOut]
    checked_at: str
    duration_ms: float


class StepOut(BaseModel):
    step_id: str
    skill: str
    status: str = Field(json_schema_extra={"enum": list(STEP_STATUSES)})
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
    status: RunStatus
    phase: Phase
    attempt: int
    cost_usd: float
    usage: UsageOut
    error: ErrorDetail | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    waiting_for_worker: bool = Field(
        description="paused, its resume granted: waiting for any worker to continue it"
    )
    resume_requested_at: str | None = Field(description="when its resume was granted")


class ResumeIn(Body):
    # NUL is refused: the note goes into the run.resumed event, and JSONB holds no NUL.
    note: str | None = Field(
        None, max_length=2000, pattern=TEXT, description="why, kept with the resume"
    )


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class RunDetail(RunSummary):
    cost_micros: int
    budget: BudgetOut
    plan: dict[str, Any] = Field(
        description="the plan as validated, with defaults filled in (see Plan)"
    )
    output: Any = Field(
        description="outputs of the steps with an output_key, by key; else the last step's"
    )
    metadata: dict[str, Any]
    idempotency_key: str | None
    submitted_by_key_id: str | None = Field(
        description="id of the API key that submitted the run (as `GET /api/v1/keys` lists it)"
    )
    cancel_requested: bool
    pause_requested: bool = Field(description="the worker pauses it at its next step boundary")
    observability_status: str = Field(json_schema_extra={"enum": list(OBSERVABILITY_STATUSES)})
    risk_level: RiskLevel
    updated_at: str
    transitions: list[TransitionOut]
    policy_checks: list[PolicyCheckOut] = Field(
        default_factory=list,
        description="mid-run checks that paused or ended the run, oldest first",
    )
    steps: list[StepOut]


# -- errors --------------------------------------------------------------------------
class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for an error answer."""
    return {"model": ErrorResponse, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_doc("missing or unknown API key"),
    403: error_doc("the key's role may not do this (README: Roles), or its tenant is not active"),
    404: error_doc("nothing of that id is visible to this tenant"),
    # Any request: the body limit is checked before routing.
    413: error_doc("the request body is over the size limit"),
    422: error_doc("invalid request"),
    429: error_doc("over the key's or tenant's rate limit; retry after `Retry-After` seconds"),
}
