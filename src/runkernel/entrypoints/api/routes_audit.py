"""A run's governance record — its runtime audit, policy evaluation and trace — and the
tenant's stored audit reconciliations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from runkernel.domain.audit import ReconciliationStatus
from runkernel.entrypoints.api import views_governance as views
from runkernel.entrypoints.api.auth import PrincipalDep
from runkernel.entrypoints.api.governance import GovernanceDep
from runkernel.entrypoints.api.ids import require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES, error_doc
from runkernel.entrypoints.api.schemas_governance import (
    EvaluationOut,
    ReconciliationList,
    RunAuditOut,
    TraceOut,
)

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


@router.get("/runs/{run_id}/audit", tags=["audit"])
def get_run_audit(run_id: str, principal: PrincipalDep, services: GovernanceDep) -> RunAuditOut:
    """What had to happen for the run (expectations), what did (acks), the verdict
    reconciled now, and the result the audit sweep stored after the deadline."""
    return views.run_audit(services.audit.run_audit(principal, require_id(run_id, "run")))


@router.get(
    "/runs/{run_id}/evaluation",
    tags=["runs"],
    responses={409: error_doc("the run is not final yet")},
)
def get_run_evaluation(
    run_id: str, principal: PrincipalDep, services: GovernanceDep
) -> EvaluationOut:
    """The policy evaluation every final run gets (successes too)."""
    return views.evaluation(services.policies.evaluation(principal, require_id(run_id, "run")))


@router.get(
    "/runs/{run_id}/trace",
    tags=["runs"],
    responses={409: error_doc("the run's execution has not begun")},
)
def get_run_trace(run_id: str, principal: PrincipalDep, services: GovernanceDep) -> TraceOut:
    """The run's trace record with one span per executed step."""
    return views.trace(services.audit.trace(principal, require_id(run_id, "run")))


@router.get("/audit/reconciliations", tags=["audit"])
def list_reconciliations(
    principal: PrincipalDep,
    services: GovernanceDep,
    status: ReconciliationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ReconciliationList:
    """Results the audit sweep stored for this tenant's runs, newest first."""
    found = services.audit.reconciliations(principal, status=status, limit=limit)
    return ReconciliationList(reconciliations=[views.reconciliation(r) for r in found])
