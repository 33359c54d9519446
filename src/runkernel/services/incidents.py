"""Reading and moving a tenant's incidents: list, get, acknowledge, resolve.

Every call is scoped to the caller's tenant: another tenant's incident is "not found"
(404), never "forbidden", so ids of other tenants leak nothing (DESIGN invariant 8).
"""

from __future__ import annotations

from runkernel.domain import events
from runkernel.domain import incidents as domain
from runkernel.domain.events import new_event
from runkernel.domain.incidents import Category, Incident, IncidentStatus
from runkernel.domain.permissions import Permission, require
from runkernel.domain.records import Principal
from runkernel.errors import ConflictError, NotFoundError
from runkernel.services.paging import check_choice, check_limit, page
from runkernel.services.ports import Clock, UnitOfWork, UnitOfWorkFactory, WakeupSignal


class IncidentService:
    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, relay_wakeup: WakeupSignal | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._relay_wakeup = relay_wakeup

    def search(
        self,
        principal: Principal,
        *,
        run_id: str | None = None,
        status: str | None = None,
        category: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Incident], str | None]:
        """One page, newest first, and the cursor of the next page (or None)."""
        require(principal, Permission.READ_INCIDENTS)
        check_choice("status", status, IncidentStatus)
        check_choice("category", category, Category)
        check_limit(limit)
        with self._uow(read_only=True) as uow:
            found = uow.incidents.search(
                principal.tenant_id,
                run_id=run_id,
                status=status,
                category=category,
                limit=limit + 1,
                before_id=cursor,
            )
        return page(found, limit, key=lambda i: i.id)

    def get(self, principal: Principal, incident_id: str) -> Incident:
        require(principal, Permission.READ_INCIDENTS)
        with self._uow(read_only=True) as uow:
            return _load(uow, principal, incident_id)

    def acknowledge(self, principal: Principal, incident_id: str) -> Incident:
        """ACTIVE → ACKED; anything else is a ``ConflictError`` (409)."""
        require(principal, Permission.ACKNOWLEDGE_INCIDENT)
        with self._uow() as uow:
            found = _load(uow, principal, incident_id)
            incident = domain.acknowledge(found, self._clock.now_ms())
            _store(uow, incident, found.status)
            uow.commit()
        return incident

    def resolve(self, principal: Principal, incident_id: str) -> Incident:
        """ACTIVE or ACKED → RESOLVED, with an ``incident.resolved`` event written in the
        same transaction (so it is published exactly when the resolution is visible)."""
        require(principal, Permission.RESOLVE_INCIDENT)
        now = self._clock.now_ms()
        with self._uow() as uow:
            found = _load(uow, principal, incident_id)
            incident = domain.resolve(found, now)
            _store(uow, incident, found.status)
            uow.outbox.add([resolved_event(incident, resolved_by=principal.key_id, now_ms=now)])
            if self._relay_wakeup is not None:
                uow.after_commit(self._relay_wakeup.notify)
            uow.commit()
        return incident


def _load(uow: UnitOfWork, principal: Principal, incident_id: str) -> Incident:
    incident = uow.incidents.get(principal.tenant_id, incident_id)
    if incident is None:
        raise NotFoundError(f"no incident {incident_id!r}")
    return incident


def _store(uow: UnitOfWork, incident: Incident, was: IncidentStatus) -> None:
    # Conditional on the status just read: of two concurrent moves only one is stored,
    # so an incident is never resolved (and announced) twice.
    if not uow.incidents.update(incident, expected_status=was):
        raise ConflictError(
            f"incident {incident.id} was changed by someone else meanwhile; read it again",
            code="incident_changed",
        )


def resolved_event(incident: Incident, *, resolved_by: str, now_ms: int) -> events.Event:
    """``incident.resolved``; ``resolved_by`` is a key id, or ``runkernel`` when the
    kernel closed it."""
    return new_event(
        events.INCIDENT_RESOLVED,
        tenant_id=incident.tenant_id,
        run_id=incident.run_id,
        payload={
            "incident_id": incident.id,
            "category": incident.category.value,
            "severity": incident.severity.value,
            "resolved_by": resolved_by,
        },
        now_ms=now_ms,
    )
