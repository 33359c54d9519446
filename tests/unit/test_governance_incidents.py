"""Incidents: one decision per finished run, the audit sweep's findings, and the lifecycle."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runkernel.adapters.db import tables
from runkernel.domain.incidents import (
    Category,
    Incident,
    IncidentStatus,
    Severity,
    acknowledge,
    audit_missing_incident,
    decide_incident,
    resolve,
    stale_incident,
)
from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.records import RunBudget
from runkernel.domain.runs import RunStatus
from runkernel.domain.skills import Usage
from runkernel.errors import ConflictError, InvariantError

NOW = 1_700_000_000_000
FAILED = RunOutcome(
    run_id="run_1",
    tenant_id="ten_1",
    agent_id="agt_1",
    status=RunStatus.FAILED,
    error_code="step_failed",
    error_message="step 'b' (http) failed: 500",
    cost_micros=10,
    usage=Usage(),
    steps_total=2,
    steps_done=2,
    failed_steps=("b",),
    skills=("llm", "http"),
    budget=RunBudget(),
    started_at_ms=0,
    finished_at_ms=1_000,
)


def new_id(prefix: str) -> str:
    return f"{prefix}_fixed"


def decide(**overrides: object) -> Incident | None:
    return decide_incident(replace(FAILED, **overrides), now_ms=NOW, new_id=new_id)  # type: ignore[arg-type]


def test_a_failed_run_gets_an_active_execution_failure() -> None:
    assert decide() == Incident(
        id="inc_fixed",
        tenant_id="ten_1",
        run_id="run_1",
        category=Category.EXECUTION_FAILURE,
        severity=Severity.MEDIUM,
        status=IncidentStatus.ACTIVE,
        title="Run run_1 failed: step_failed",
        detail="step 'b' (http) failed: 500\nfailed steps: b",
        error_code="step_failed",
        created_at_ms=NOW,
        updated_at_ms=NOW,
        resolved_at_ms=None,
    )


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.CANCELLED])
def test_succeeded_and_cancelled_runs_need_no_incident(status: RunStatus) -> None:
    assert decide(status=status, error_code="cancelled") is None


@pytest.mark.parametrize(
    ("status", "code", "category", "severity"),
    [
        (RunStatus.FAILED_POLICY, "budget_exceeded", Category.BUDGET_EXCEEDED, Severity.MEDIUM),
        (RunStatus.FAILED, "budget_exceeded", Category.BUDGET_EXCEEDED, Severity.MEDIUM),
        (
            RunStatus.FAILED_POLICY,
            "agent_budget_exhausted",
            Category.AUTHORIZATION_DENIED,
            Severity.MEDIUM,
        ),
        (RunStatus.FAILED_POLICY, "denied", Category.AUTHORIZATION_DENIED, Severity.MEDIUM),
        (RunStatus.FAILED, "tenant_denied", Category.AUTHORIZATION_DENIED, Severity.MEDIUM),
        (
            RunStatus.FAILED_POLICY,
            "tenant_inactive",
            Category.AUTHORIZATION_DENIED,
            Severity.MEDIUM,
        ),
        (RunStatus.FAILED_POLICY, "policy_blocked", Category.POLICY_VIOLATION, Severity.HIGH),
        (RunStatus.FAILED_POLICY, None, Category.POLICY_VIOLATION, Severity.HIGH),
        (RunStatus.FAILED, "max_attempts_exceeded", Category.EXECUTION_FAILURE, Severity.HIGH),
        (RunStatus.FAILED, "step_failed", Category.EXECUTION_FAILURE, Severity.MEDIUM),
        (RunStatus.FAILED, None, Category.EXECUTION_FAILURE, Severity.MEDIUM),
    ],
)
def test_category_and_severity_by_cause(
    status: RunStatus, code: str | None, category: Category, severity: Severity
) -> None:
    got = decide(status=status, error_code=code)
    assert got is not None
    assert (got.category, got.severity, got.error_code) == (category, severity, code)


def test_without_a_message_the_detail_names_the_status() -> None:
    got = decide(error_code=None, error_message=None, failed_steps=())
    assert got is not None
    assert (got.title, got.detail) == ("Run run_1 failed: unknown", "run ended failed")


def test_no_decision_before_the_run_is_final() -> None:
    with pytest.raises(InvariantError):
        decide(status=RunStatus.RUNNING)


def test_stale_incident_lists_what_is_missing() -> None:
    got = stale_incident(
        "run_9",
        "ten_1",
        ["incidents/create_incident", "orchestrator/finalize_run"],
        now_ms=NOW,
        new_id=new_id,
    )
    assert (got.category, got.severity, got.status) == (
        Category.STALE_RUN,
        Severity.HIGH,
        IncidentStatus.ACTIVE,
    )
    assert (got.run_id, got.tenant_id, got.error_code) == ("run_9", "ten_1", "stale_run")
    assert got.detail == "missing actions: incidents/create_incident, orchestrator/finalize_run"


def test_audit_incident_is_high_when_records_are_missing() -> None:
    got = audit_missing_incident(
        "run_9",
        "ten_1",
        ["policies/evaluate_policy"],
        drift_actions=["incidents/create_incident"],
        now_ms=NOW,
        new_id=new_id,
    )
    assert (got.category, got.severity, got.error_code) == (
        Category.AUDIT_MISSING,
        Severity.HIGH,
        "audit_missing",
    )
    assert got.detail == (
        "missing actions: policies/evaluate_policy\n"
        "unexpected actions (drift): incidents/create_incident"
    )


def test_audit_incident_for_drift_only_is_medium() -> None:
    got = audit_missing_incident(
        "run_9", None, [], drift_actions=["incidents/create_incident"], now_ms=NOW, new_id=new_id
    )
    assert (got.severity, got.error_code, got.tenant_id) == (Severity.MEDIUM, "audit_drift", None)


def test_audit_incident_with_nothing_to_report_is_refused() -> None:
    with pytest.raises(InvariantError):
        audit_missing_incident("run_9", "ten_1", [], now_ms=NOW, new_id=new_id)


def _active() -> Incident:
    incident = decide()
    assert incident is not None
    return incident


def test_acknowledge_then_resolve() -> None:
    acked = acknowledge(_active(), NOW + 5)
    assert (acked.status, acked.updated_at_ms, acked.resolved_at_ms) == (
        IncidentStatus.ACKED,
        NOW + 5,
        None,
    )
    done = resolve(acked, NOW + 9)
    assert (done.status, done.updated_at_ms, done.resolved_at_ms, done.created_at_ms) == (
        IncidentStatus.RESOLVED,
        NOW + 9,
        NOW + 9,
        NOW,
    )


def test_an_active_incident_resolves_directly() -> None:
    assert resolve(_active(), NOW + 1).status is IncidentStatus.RESOLVED


@pytest.mark.parametrize("status", [IncidentStatus.ACKED, IncidentStatus.RESOLVED])
def test_acknowledge_needs_an_active_incident(status: IncidentStatus) -> None:
    with pytest.raises(ConflictError, match=f"is {status.value}") as caught:
        acknowledge(replace(_active(), status=status), NOW)
    assert caught.value.code == "incident_not_active"


def test_a_resolution_note_is_kept_after_the_finding() -> None:
    found = _active()
    done = resolve(found, NOW + 3, note="the run finished after all")
    assert done.detail == f"{found.detail}\nresolved: the run finished after all"
    assert resolve(found, NOW + 3).detail == found.detail


def test_resolving_twice_is_a_conflict() -> None:
    done = resolve(_active(), NOW)
    with pytest.raises(ConflictError, match="already RESOLVED") as caught:
        resolve(done, NOW + 1)
    assert caught.value.code == "incident_already_resolved"


def test_to_dict_maps_the_incidents_columns() -> None:
    assert set(_active().to_dict()) == {c.name for c in tables.incidents.columns}
    assert _active().to_dict()["category"] == "EXECUTION_FAILURE"
