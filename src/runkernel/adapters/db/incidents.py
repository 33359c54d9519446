"""SQL for incidents: at most one per (run, category), which the database enforces.
Repositories never commit, roll back or begin (DESIGN invariant 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, update

from runkernel.adapters.db.inserts import insert_ignore
from runkernel.adapters.db.tables import incidents
from runkernel.domain.incidents import Category, Incident, IncidentStatus, Severity

_INSERT_INCIDENT = incidents


class SqlIncidentRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, incident: Incident) -> bool:
        """Insert; False when the run already has an incident of that category."""
        result = self._conn.execute(
            insert_ignore(_INSERT_INCIDENT, self._conn), _incident_values(incident)
        )
        return result.first() is not None

    def get(self, tenant_id: str, incident_id: str) -> Incident | None:
        row = self._conn.execute(
            select(incidents).where(
                incidents.c.tenant_id == tenant_id, incidents.c.id == incident_id
            )
        ).first()
        return incident_from_row(row) if row else None

    def for_run(self, run_id: str) -> list[Incident]:
        rows = self._conn.execute(
            select(incidents).where(incidents.c.run_id == run_id).order_by(incidents.c.id)
        )
        return [incident_from_row(r) for r in rows]

    def search(
        self,
        tenant_id: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        category: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Incident]:
        query = select(incidents).where(incidents.c.tenant_id == tenant_id)
        if run_id:
            query = query.where(incidents.c.run_id == run_id)
        if status:
            query = query.where(incidents.c.status == status)
        if category:
            query = query.where(incidents.c.category == category)
        if before_id:
            query = query.where(incidents.c.id < before_id)
        rows = self._conn.execute(query.order_by(incidents.c.id.desc()).limit(limit))
        return [incident_from_row(r) for r in rows]

    def update(self, incident: Incident, *, expected_status: IncidentStatus) -> bool:
        """Store a status change; False when the incident is no longer ``expected_status``
        (a concurrent move won), so the caller can refuse instead of moving it twice."""
        result = self._conn.execute(
            update(incidents)
            .where(incidents.c.id == incident.id, incidents.c.status == expected_status.value)
            .values(
                status=incident.status.value,
                detail=incident.detail,
                updated_at_ms=incident.updated_at_ms,
                resolved_at_ms=incident.resolved_at_ms,
            )
        )
        return result.rowcount == 1


def _incident_values(i: Incident) -> dict[str, Any]:
    return {
        "id": i.id,
        "tenant_id": i.tenant_id,
        "run_id": i.run_id,
        "category": i.category.value,
        "severity": i.severity.value,
        "status": i.status.value,
        "title": i.title,
        "detail": i.detail,
        "error_code": i.error_code,
        "created_at_ms": i.created_at_ms,
        "updated_at_ms": i.updated_at_ms,
        "resolved_at_ms": i.resolved_at_ms,
    }


def incident_from_row(r: Row[Any]) -> Incident:
    return Incident(
        id=r.id,
        tenant_id=r.tenant_id,
        run_id=r.run_id,
        category=Category(r.category),
        severity=Severity(r.severity),
        status=IncidentStatus(r.status),
        title=r.title,
        detail=r.detail,
        error_code=r.error_code,
        created_at_ms=r.created_at_ms,
        updated_at_ms=r.updated_at_ms,
        resolved_at_ms=r.resolved_at_ms,
    )
