"""Bodies of the governance endpoints: incidents, policy rules and evaluations, traces,
lessons and the runtime audit. Shared conventions (strict bodies, the error shape, ids)
live in :mod:`runkernel.entrypoints.api.schemas`.

Enumerated fields are plain strings; the ``enum`` lists document the domain's values.
The bodies that create and change rules are in :mod:`.schemas_policies`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from runkernel.domain.audit import AckStatus, ExpectationStatus, ReconciliationStatus
from runkernel.domain.incidents import Category, IncidentStatus, Severity
from runkernel.domain.lessons import LessonKind, LessonState
from runkernel.domain.policy import Enforcement, Outcome, RuleKind, RuleStatus, Scope
from runkernel.domain.traces import TraceStatus
from runkernel.entrypoints.api.schema_rules import one_of
from runkernel.entrypoints.api.schemas import STEP_STATUSES, ErrorDetail, UsageOut


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
    kind: str = one_of(RuleKind)
    enforcement: str = one_of(Enforcement)
    message: str


class PolicyDeniedDetail(ErrorDetail):
    """``policy_denied`` adds the refused run and the rules that refused it; other errors
    of the same status (``permission_denied``) have code and message only."""

    run_id: str | None = Field(None, description="the refused run, stored as failed_policy")
    violations: list[ViolationOut] = Field(
        default_factory=list, description="the BLOCK violations that refused the run"
    )


class PolicyDeniedResponse(BaseModel):
    error: PolicyDeniedDetail


class RuleRefOut(BaseModel):
    id: str
    version: int
    kind: str = one_of(RuleKind)
    enforcement: str = one_of(Enforcement)


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
    status: str = Field(json_schema_extra={"enum": list(STEP_STATUSES)})
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
    status: str = one_of(TraceStatus)
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
