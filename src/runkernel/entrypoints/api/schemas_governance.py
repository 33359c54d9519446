"""Bodies of the governance endpoints: incidents, policy rules and evaluations, traces,
lessons and the runtime audit. Shared conventions (strict bodies, the error shape, ids)
live in :mod:`runkernel.entrypoints.api.schemas`.

Enumerated fields are plain strings validated by the domain, which names the allowed
values in its 422 message; the ``enum`` lists here only document them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from runkernel.domain.audit import AckStatus, ExpectationStatus, ReconciliationStatus
from runkernel.domain.incidents import Category, IncidentStatus, Severity
from runkernel.domain.lessons import LessonKind, LessonState
from runkernel.domain.policy import Enforcement, Outcome, RuleKind, RuleStatus, Scope
from runkernel.entrypoints.api.schemas import Body, UsageOut


def one_of(enum: type[StrEnum], default: Any = ..., description: str | None = None) -> Any:
    """A string field documented as one of ``enum``'s values (``...``: required)."""
    return Field(
        default, description=description, json_schema_extra={"enum": [e.value for e in enum]}
    )


# -- incidents -----------------------------------------------------------------------
class IncidentOut(BaseModel):
    id: str
    run_id: str | None
    category: str = one_of(Category)
    severity: str = one_of(Severity)
    status: str = one_of(IncidentStatus)
    title: str
    detail: str
    error_code: str | None
    created_at: str
    updated_at: str
    resolved_at: str | None


class IncidentList(BaseModel):
    incidents: list[IncidentOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


# -- policies ------------------------------------------------------------------------
PARAMS_DOC = (
    "max_cost: {max_cost_usd} (stored as max_cost_micros); max_tokens: {max_tokens}; "
    "max_steps: {max_steps}; max_duration: {max_duration_s}; allowed_skills, "
    "denied_skills, require_approval: {skills: [names]}"
)


class PolicyCreate(Body):
    kind: str = one_of(RuleKind)
    params: dict[str, Any] = Field(description=PARAMS_DOC, examples=[{"max_cost_usd": 0.5}])
    enforcement: str = one_of(Enforcement, Enforcement.BLOCK.value)
    scope: str = one_of(Scope, Scope.TENANT.value)
    agent_id: str | None = Field(None, description="required exactly when scope is agent")


class PolicyPatch(Body):
    params: dict[str, Any] | None = Field(None, description=PARAMS_DOC)
    enforcement: str | None = one_of(Enforcement, None)
    status: str | None = one_of(RuleStatus, None, "RETIRED retires the rule, like DELETE")
    version: int | None = Field(
        None, ge=1, description="apply only if the rule is still at this version (else 409)"
    )


class PolicyOut(BaseModel):
    id: str
    kind: str = one_of(RuleKind)
    params: dict[str, Any]
    enforcement: str = one_of(Enforcement)
    scope: str = one_of(Scope)
    agent_id: str | None
    status: str = one_of(RuleStatus)
    version: int = Field(description="1 at creation, + 1 on every change")
    created_at: str
    updated_at: str


class PolicyList(BaseModel):
    policies: list[PolicyOut]


class ViolationOut(BaseModel):
    rule_id: str
    rule_version: int
    kind: str
    enforcement: str
    message: str


class RuleRefOut(BaseModel):
    id: str
    version: int
    kind: str
    enforcement: str


class EvaluationOut(BaseModel):
    id: str
    run_id: str
    outcome: str = one_of(Outcome)
    violations: list[ViolationOut]
    rules: list[RuleRefOut] = Field(description="the rules judged, at the version judged")
    evaluated_at: str


# -- traces --------------------------------------------------------------------------
class SpanOut(BaseModel):
    step_id: str
    skill: str
    status: str
    attempt: int
    tries: int
    duration_ms: int
    usage: UsageOut
    cost_usd: float
    error: str | None
    finished_at: str | None


class TraceOut(BaseModel):
    run_id: str
    agent_id: str
    status: str = Field(description="started, completed, failed or aborted")
    sink_error: str | None = Field(description="why the observability sink refused it")
    started_at: str
    completed_at: str | None
    spans: list[SpanOut]


# -- lessons -------------------------------------------------------------------------
class LessonOut(BaseModel):
    id: str
    agent_id: str
    run_id: str
    kind: str = one_of(LessonKind)
    state: str = one_of(LessonState)
    title: str
    detail: dict[str, Any]
    proposed_rule: dict[str, Any] | None = Field(
        description="a WARN rule scoped to the agent that convert would create, or null"
    )
    created_at: str
    updated_at: str


class LessonList(BaseModel):
    lessons: list[LessonOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class LessonConverted(BaseModel):
    lesson: LessonOut
    policy: PolicyOut = Field(description="the ACTIVE rule created from the proposal")


# -- audit ---------------------------------------------------------------------------
ACTIONS_DOC = "domain/action keys, repeated when counted more than once"


class ExpectationOut(BaseModel):
    id: str
    domain: str
    action: str
    status: str = one_of(ExpectationStatus)
    deadline: str | None
    created_at: str
    acked_at: str | None
    metadata: dict[str, Any]


class AckOut(BaseModel):
    id: str
    domain: str
    action: str
    status: str = one_of(AckStatus)
    result_id: str | None
    error: str | None
    rolled_back: bool
    rollback_reason: str | None
    created_at: str
    metadata: dict[str, Any]


class ReconciliationOut(BaseModel):
    run_id: str
    status: str = one_of(ReconciliationStatus)
    clean: bool
    stale_run: bool
    missing: list[str] = Field(description=ACTIONS_DOC)
    drift: list[str] = Field(description=ACTIONS_DOC)
    failed: list[str] = Field(description=ACTIONS_DOC)
    invalid: list[str] = Field(description="expectations without a deadline")
    expected_count: int
    acked_count: int
    reconciled_at: str


class RunAuditOut(BaseModel):
    run_id: str
    expectations: list[ExpectationOut]
    acks: list[AckOut]
    reconciliation: ReconciliationOut | None = Field(
        description="reconciled now from the expectations and acks above"
    )
    stored: ReconciliationOut | None = Field(
        description="the result the audit sweep recorded after the deadline, if any"
    )


class ReconciliationList(BaseModel):
    reconciliations: list[ReconciliationOut]
