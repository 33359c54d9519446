"""``/api/v1/incidents``: a tenant's incidents and their lifecycle
(ACTIVE → ACKED → RESOLVED, or ACTIVE → RESOLVED)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from runkernel.domain.incidents import Category, IncidentStatus
from runkernel.entrypoints.api import views_governance as views
from runkernel.entrypoints.api.auth import PrincipalDep
from runkernel.entrypoints.api.governance import GovernanceDep
from runkernel.entrypoints.api.ids import cursor_query, require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES, ID_PATTERN, error_doc
from runkernel.entrypoints.api.schemas_governance import IncidentList, IncidentOut

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], responses=ERROR_RESPONSES)


@router.get("")
def list_incidents(
    principal: PrincipalDep,
    services: GovernanceDep,
    run_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    status: IncidentStatus | None = None,
    category: Category | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, cursor_query("inc")] = None,
) -> IncidentList:
    """Incidents of this tenant, newest first, one page at a time."""
    found, next_cursor = services.incidents.search(
        principal, run_id=run_id, status=status, category=category, limit=limit, cursor=cursor
    )
    return IncidentList(incidents=[views.incident(i) for i in found], next_cursor=next_cursor)


@router.get("/{incident_id}")
def get_incident(incident_id: str, principal: PrincipalDep, services: GovernanceDep) -> IncidentOut:
    return views.incident(services.incidents.get(principal, require_id(incident_id, "incident")))


@router.post("/{incident_id}/acknowledge", responses={409: error_doc("the incident is not ACTIVE")})
def acknowledge_incident(
    incident_id: str, principal: PrincipalDep, services: GovernanceDep
) -> IncidentOut:
    """ACTIVE → ACKED: someone is looking at it."""
    incident_id = require_id(incident_id, "incident")
    return views.incident(services.incidents.acknowledge(principal, incident_id))


@router.post("/{incident_id}/resolve", responses={409: error_doc("already RESOLVED")})
def resolve_incident(
    incident_id: str, principal: PrincipalDep, services: GovernanceDep
) -> IncidentOut:
    """ACTIVE or ACKED → RESOLVED; publishes ``incident.resolved`` once committed."""
    incident_id = require_id(incident_id, "incident")
    return views.incident(services.incidents.resolve(principal, incident_id))
