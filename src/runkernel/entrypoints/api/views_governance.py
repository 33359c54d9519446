"""Governance records rendered as response bodies (times ISO 8601 UTC, money in USD)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runkernel.domain.audit import ActionKey, AuditExpectation, DomainAck, ReconciliationResult
from runkernel.domain.incidents import Incident
from runkernel.domain.lessons import Lesson
from runkernel.domain.money import micros_to_usd
from runkernel.domain.policy import PolicyRule
from runkernel.entrypoints.api import schemas_governance as s
from runkernel.entrypoints.api.schemas import UsageOut
from runkernel.entrypoints.api.views import iso, iso_or_none
from runkernel.services.audit import RunAudit, RunTrace


def incident(i: Incident) -> s.IncidentOut:
    return s.IncidentOut(
        id=i.id,
        run_id=i.run_id,
        category=i.category.value,
        severity=i.severity.value,
        status=i.status.value,
        title=i.title,
        detail=i.detail,
        error_code=i.error_code,
        created_at=iso(i.created_at_ms),
        updated_at=iso(i.updated_at_ms),
        resolved_at=iso_or_none(i.resolved_at_ms),
    )


def policy(rule: PolicyRule) -> s.PolicyOut:
    return s.PolicyOut(
        id=rule.id,
        kind=rule.kind.value,
        params=dict(rule.params),
        enforcement=rule.enforcement.value,
        scope=rule.scope.value,
        agent_id=rule.agent_id,
        status=rule.status.value,
        version=rule.version,
        created_at=iso(rule.created_at_ms),
        updated_at=iso(rule.updated_at_ms),
    )


def evaluation(row: Mapping[str, Any]) -> s.EvaluationOut:
    return s.EvaluationOut(
        id=row["id"],
        run_id=row["run_id"],
        outcome=row["outcome"],
        violations=[s.ViolationOut(**v) for v in row["violations"]],
        rules=[s.RuleRefOut(**r) for r in row["rules"]],
        evaluated_at=iso(row["evaluated_at_ms"]),
    )


def trace(found: RunTrace) -> s.TraceOut:
    t = found.trace
    return s.TraceOut(
        run_id=t.run_id,
        agent_id=t.agent_id,
        status=t.status.value,
        sink_error=found.sink_error,
        started_at=iso(t.started_at_ms),
        completed_at=iso_or_none(t.completed_at_ms),
        spans=[_span(span) for span in t.spans],
    )


def _span(span: Mapping[str, Any]) -> s.SpanOut:
    return s.SpanOut(
        step_id=span["step_id"],
        skill=span["skill"],
        status=span["status"],
        attempt=span["attempt"],
        tries=span["tries"],
        duration_ms=span["duration_ms"],
        usage=UsageOut(**span["usage"]),
        cost_usd=micros_to_usd(span["cost_micros"]),
        error=span["error"],
        finished_at=iso_or_none(span["finished_at_ms"]),
    )


def lesson(record: Lesson) -> s.LessonOut:
    return s.LessonOut(
        id=record.id,
        agent_id=record.agent_id,
        run_id=record.run_id,
        kind=record.kind.value,
        state=record.state.value,
        title=record.title,
        detail=record.detail,
        proposed_rule=record.proposed_rule,
        created_at=iso(record.created_at_ms),
        updated_at=iso(record.updated_at_ms),
    )


def expectation(e: AuditExpectation) -> s.ExpectationOut:
    return s.ExpectationOut(
        id=e.id,
        domain=e.domain,
        action=e.action,
        status=e.status.value,
        deadline=iso_or_none(e.deadline_ms),
        created_at=iso(e.created_at_ms),
        acked_at=iso_or_none(e.acked_at_ms),
        metadata=dict(e.metadata),
    )


def ack(a: DomainAck) -> s.AckOut:
    return s.AckOut(
        id=a.id,
        domain=a.domain,
        action=a.action,
        status=a.status.value,
        result_id=a.result_id,
        error=a.error,
        rolled_back=a.rolled_back,
        rollback_reason=a.rollback_reason,
        created_at=iso(a.created_at_ms),
        metadata=dict(a.metadata),
    )


def action_keys(keys: Iterable[ActionKey]) -> list[str]:
    return [f"{domain}/{action}" for domain, action in keys]


def reconciliation(r: ReconciliationResult) -> s.ReconciliationOut:
    return s.ReconciliationOut(
        run_id=r.run_id,
        status=r.status.value,
        clean=r.is_clean(),
        stale_run=r.stale_run,
        missing=action_keys(r.missing_actions),
        drift=action_keys(r.drift_actions),
        failed=action_keys(r.failed_actions),
        invalid=action_keys(r.invalid),
        expected_count=r.expected_count,
        acked_count=r.acked_count,
        reconciled_at=iso(r.reconciled_at_ms),
    )


def run_audit(audit: RunAudit) -> s.RunAuditOut:
    return s.RunAuditOut(
        run_id=audit.run_id,
        expectations=[expectation(e) for e in audit.expectations],
        acks=[ack(a) for a in audit.acks],
        reconciliation=reconciliation(audit.live) if audit.live else None,
        stored=reconciliation(audit.stored) if audit.stored else None,
    )
