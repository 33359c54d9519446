"""Incidents: the one decision per finished run, the audit sweep's findings, and their lifecycle.

Decision table of :func:`decide_incident` (first match wins):

=================================  =====================  ========
run                                category               severity
=================================  =====================  ========
succeeded                          none ("none needed")
cancelled                          none (see below)
error ``budget_exceeded``          BUDGET_EXCEEDED        MEDIUM
a denial code (``DENIAL_CODES``,   AUTHORIZATION_DENIED   MEDIUM
``denied``, ``*_denied``)
status failed_policy               POLICY_VIOLATION       HIGH
error ``max_attempts_exceeded``    EXECUTION_FAILURE      HIGH
any other failure                  EXECUTION_FAILURE      MEDIUM
=================================  =====================  ========

A cancel is the tenant's own decision, not a failure of the run or the system, so it gets
no incident (the decision is still acked as "none needed"). ``max_attempts_exceeded`` is
HIGH because it means workers kept dying on the run: a systemic fault, not one bad step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from runkernel.domain.outcomes import NewId, RunOutcome, require_final
from runkernel.domain.runs import RunStatus
from runkernel.errors import ConflictError, InvariantError

DENIAL_CODES = frozenset({"agent_budget_exhausted", "tenant_inactive", "quota_exceeded"})


class Category(StrEnum):
    EXECUTION_FAILURE = "EXECUTION_FAILURE"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    POLICY_VIOLATION = "POLICY_VIOLATION"
    AUTHORIZATION_DENIED = "AUTHORIZATION_DENIED"
    STALE_RUN = "STALE_RUN"
    AUDIT_MISSING = "AUDIT_MISSING"
    SYSTEM = "SYSTEM"


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class IncidentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    ACKED = "ACKED"
    RESOLVED = "RESOLVED"


@dataclass(frozen=True, slots=True)
class Incident:
    """One row of ``incidents``; ``tenant_id``/``run_id`` are None only for system incidents."""

    id: str
    tenant_id: str | None
    run_id: str | None
    category: Category
    severity: Severity
    status: IncidentStatus
    title: str
    detail: str
    error_code: str | None
    created_at_ms: int
    updated_at_ms: int
    resolved_at_ms: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "category": self.category.value,
            "severity": self.severity.value,
            "status": self.status.value,
            "title": self.title,
            "detail": self.detail,
            "error_code": self.error_code,
            "created_at_ms": self.created_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "resolved_at_ms": self.resolved_at_ms,
        }


def is_denial(error_code: str | None) -> bool:
    """Refused at authorization (T0) rather than failed while running."""
    if error_code is None:
        return False
    return error_code in DENIAL_CODES or error_code == "denied" or error_code.endswith("_denied")


def classify(outcome: RunOutcome) -> tuple[Category, Severity] | None:
    """The category and severity an incident for ``outcome`` gets; None when none is due."""
    require_final(outcome)
    if outcome.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
        return None
    code = outcome.error_code
    if code == "budget_exceeded":
        return Category.BUDGET_EXCEEDED, Severity.MEDIUM
    if is_denial(code):
        return Category.AUTHORIZATION_DENIED, Severity.MEDIUM
    if outcome.status is RunStatus.FAILED_POLICY:
        return Category.POLICY_VIOLATION, Severity.HIGH
    if code == "max_attempts_exceeded":
        return Category.EXECUTION_FAILURE, Severity.HIGH
    return Category.EXECUTION_FAILURE, Severity.MEDIUM


def decide_incident(outcome: RunOutcome, *, now_ms: int, new_id: NewId) -> Incident | None:
    """The incident a finished run needs, or None when none is needed (succeeded, cancelled).
    Raises ``InvariantError`` for a run that is not final."""
    decided = classify(outcome)
    if decided is None:
        return None
    category, severity = decided
    code = outcome.error_code or "unknown"
    lines = [outcome.error_message or f"run ended {outcome.status.value}"]
    if outcome.failed_steps:
        lines.append("failed steps: " + ", ".join(outcome.failed_steps))
    return _new(
        new_id,
        now_ms,
        tenant_id=outcome.tenant_id,
        run_id=outcome.run_id,
        category=category,
        severity=severity,
        title=f"Run {outcome.run_id} {outcome.status.value}: {code}",
        detail="\n".join(lines),
        error_code=outcome.error_code,
    )


def stale_incident(
    run_id: str,
    tenant_id: str | None,
    missing_actions: Sequence[str],
    *,
    now_ms: int,
    new_id: NewId,
) -> Incident:
    """A run whose finalize was not acked by its deadline: probably no worker is left for it."""
    missing = ", ".join(missing_actions) or "none"
    return _new(
        new_id,
        now_ms,
        tenant_id=tenant_id,
        run_id=run_id,
        category=Category.STALE_RUN,
        severity=Severity.HIGH,
        title=f"Run {run_id} is stale: not finalized by its deadline",
        detail=f"missing actions: {missing}",
        error_code="stale_run",
    )


def pause_escalated_incident(
    run_id: str, tenant_id: str, reason: str, *, now_ms: int, new_id: NewId
) -> Incident:
    """A pause whose SLA ran out with nobody resuming it, and whose timeout escalates."""
    return _new(
        new_id,
        now_ms,
        tenant_id=tenant_id,
        run_id=run_id,
        category=Category.POLICY_VIOLATION,
        severity=Severity.MEDIUM,
        title=f"Run {run_id} is still paused ({reason}) past its SLA",
        detail="its pause escalated: it waits one more, longer SLA, then terminates",
        error_code="pause_escalated",
    )


def audit_missing_incident(
    run_id: str,
    tenant_id: str | None,
    missing_actions: Sequence[str],
    *,
    drift_actions: Sequence[str] = (),
    now_ms: int,
    new_id: NewId,
) -> Incident:
    """A finished run whose governance record has gaps (HIGH) or only extras (drift, MEDIUM).
    Raises ``InvariantError`` when there is nothing to report."""
    if not missing_actions and not drift_actions:
        raise InvariantError(f"run {run_id}: an audit incident needs missing or drift actions")
    lines = []
    if missing_actions:
        lines.append("missing actions: " + ", ".join(missing_actions))
    if drift_actions:
        lines.append("unexpected actions (drift): " + ", ".join(drift_actions))
    return _new(
        new_id,
        now_ms,
        tenant_id=tenant_id,
        run_id=run_id,
        category=Category.AUDIT_MISSING,
        severity=Severity.HIGH if missing_actions else Severity.MEDIUM,
        title=f"Run {run_id}: governance record incomplete"
        if missing_actions
        else f"Run {run_id}: unexpected governance actions",
        detail="\n".join(lines),
        error_code="audit_missing" if missing_actions else "audit_drift",
    )


def acknowledge(incident: Incident, now_ms: int) -> Incident:
    """ACTIVE → ACKED: someone is looking at it."""
    if incident.status is not IncidentStatus.ACTIVE:
        raise ConflictError(
            f"incident {incident.id} is {incident.status.value}; only an ACTIVE incident "
            "can be acknowledged",
            code="incident_not_active",
        )
    return replace(incident, status=IncidentStatus.ACKED, updated_at_ms=now_ms)


def resolve(incident: Incident, now_ms: int, *, note: str | None = None) -> Incident:
    """ACTIVE or ACKED → RESOLVED; resolving twice is a conflict, not a silent no-op.
    A ``note`` (why it was resolved) is appended to the detail."""
    if incident.status is IncidentStatus.RESOLVED:
        raise ConflictError(
            f"incident {incident.id} is already RESOLVED", code="incident_already_resolved"
        )
    detail = f"{incident.detail}\nresolved: {note}" if note else incident.detail
    return replace(
        incident,
        status=IncidentStatus.RESOLVED,
        detail=detail,
        updated_at_ms=now_ms,
        resolved_at_ms=now_ms,
    )


def stale_run_finished_note(status: str, verdict: str | None) -> str:
    """Why a STALE_RUN incident closes itself: the run it called stale did finish."""
    after = (
        f"its audit reconciliation, re-evaluated at completion, is {verdict}"
        if verdict
        else "its audit reconciliation is re-evaluated once its acks reach the audit store"
    )
    return f"the run finished ({status}) after the audit sweep flagged it stale; {after}"


def _new(
    new_id: NewId,
    now_ms: int,
    *,
    tenant_id: str | None,
    run_id: str | None,
    category: Category,
    severity: Severity,
    title: str,
    detail: str,
    error_code: str | None,
) -> Incident:
    return Incident(
        id=new_id("inc"),
        tenant_id=tenant_id,
        run_id=run_id,
        category=category,
        severity=severity,
        status=IncidentStatus.ACTIVE,
        title=title,
        detail=detail,
        error_code=error_code,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )
