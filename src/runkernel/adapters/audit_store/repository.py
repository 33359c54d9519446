"""SQL for audit expectations, acks and reconciliations on a connection its caller owns.

Like every repository it never commits, rolls back or begins (DESIGN invariant 3): the
run's expectations go into the same transaction as the run, a completion's acks into the
completion's, and a sweep's result into the sweep's (with its incident and event).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from runkernel.adapters.db.inserts import insert_ignore, insert_rows
from runkernel.adapters.db.tables import (
    audit_ack_outbox,
    audit_acks,
    audit_expectations,
    audit_reconciliations,
)
from runkernel.domain.audit import (
    FINALIZE_RUN,
    AuditExpectation,
    DomainAck,
    ExpectationStatus,
    ReconciliationResult,
    ReconciliationStatus,
    settle_expectations,
)

_exp, _ack, _rec = audit_expectations.c, audit_acks.c, audit_reconciliations.c
_out = audit_ack_outbox.c
_SETTLE = (
    update(audit_expectations)
    .where(_exp.id == bindparam("p_id"))
    .values(status=bindparam("p_status"), acked_at_ms=bindparam("p_acked_at_ms"))
)


class SqlAuditRepository:
    """An :class:`~runkernel.services.ports.AuditStore` in the caller's transaction."""

    durable = True

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add_expectations(self, expectations: Sequence[AuditExpectation]) -> None:
        insert_rows(self._conn, audit_expectations, [e.to_dict() for e in expectations])

    def add_ack(self, ack: DomainAck) -> None:
        """Idempotent by ack id: adding an ack already stored changes nothing."""
        self._conn.execute(insert_ignore(audit_acks, self._conn), ack.to_dict())

    def add_acks(self, acks: Sequence[DomainAck]) -> None:
        """Several acks in one statement (a completion acks five actions at once)."""
        insert_rows(self._conn, audit_acks, [a.to_dict() for a in acks])

    # -- the hand-off to a non-SQL audit store (Redis): DESIGN invariant 9 ---------------

    def hand_off_acks(self, acks: Sequence[DomainAck]) -> None:
        """Record acks for the audit store in the caller's transaction; an
        ``AckForwarder`` copies them to the store once it has committed."""
        rows = [
            {"id": a.id, "run_id": a.run_id, "ack": a.to_dict(), "created_at_ms": a.created_at_ms}
            for a in acks
        ]
        insert_rows(self._conn, audit_ack_outbox, rows)

    def pending_hand_offs(self, limit: int = 100) -> list[DomainAck]:
        """Handed-off acks not yet forwarded, oldest first."""
        rows = self._conn.execute(
            select(_out.ack)
            .where(_out.forwarded_at_ms.is_(None))
            .order_by(_out.created_at_ms, _out.id)
            .limit(limit)
        )
        return [DomainAck.from_dict(row.ack) for row in rows]

    def mark_forwarded(self, ids: Sequence[str], now_ms: int) -> int:
        if not ids:
            return 0
        result = self._conn.execute(
            update(audit_ack_outbox)
            .where(_out.id.in_(list(ids)), _out.forwarded_at_ms.is_(None))
            .values(forwarded_at_ms=now_ms)
        )
        return result.rowcount

    def expectations(self, run_id: str) -> list[AuditExpectation]:
        rows = self._conn.execute(
            select(audit_expectations)
            .where(_exp.run_id == run_id)
            .order_by(_exp.created_at_ms, _exp.id)
        )
        return [_expectation(row) for row in rows]

    def acks(self, run_id: str) -> list[DomainAck]:
        rows = self._conn.execute(
            select(audit_acks).where(_ack.run_id == run_id).order_by(_ack.created_at_ms, _ack.id)
        )
        return [_ack_from_row(row) for row in rows]

    def get_pending_run_ids(self, now_ms: int, *, limit: int = 100) -> list[str]:
        # Saving a result settles the expectations, so the partial index on PENDING rows
        # holds only unreconciled runs; NOT EXISTS guards expectations added afterwards.
        deadline = func.min(_exp.deadline_ms)
        rows = self._conn.execute(
            select(_exp.run_id, deadline)
            .where(
                _exp.status == ExpectationStatus.PENDING.value,
                _exp.deadline_ms < now_ms,
                _exp.domain == FINALIZE_RUN[0],
                _exp.action == FINALIZE_RUN[1],
                ~exists().where(_rec.run_id == _exp.run_id),
            )
            .group_by(_exp.run_id)
            .order_by(deadline, _exp.run_id)
            .limit(limit)
        )
        return [row.run_id for row in rows]

    def save_reconciliation(
        self, result: ReconciliationResult, tenant_id: str | None, *, replace: bool = False
    ) -> bool:
        values = {
            "run_id": result.run_id,
            "tenant_id": tenant_id,
            "status": result.status.value,
            "clean": result.is_clean(),
            "result": result.to_dict(),
            "reconciled_at_ms": result.reconciled_at_ms,
        }
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(audit_reconciliations).values(values)
        if replace:
            changes = {k: v for k, v in values.items() if k != "run_id"}
            stmt = stmt.on_conflict_do_update(index_elements=["run_id"], set_=changes)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["run_id"])
        # RETURNING, not rowcount: a row comes back exactly when this call wrote one.
        if self._conn.execute(stmt.returning(_rec.run_id)).first() is None:
            return False
        expectations = self.expectations(result.run_id)
        settled = settle_expectations(expectations, self.acks(result.run_id))
        changed = [
            {"p_id": new.id, "p_status": new.status.value, "p_acked_at_ms": new.acked_at_ms}
            for old, new in zip(expectations, settled, strict=True)
            if old != new
        ]
        if changed:
            self._conn.execute(_SETTLE, changed)
        return True

    def reconciliation(self, run_id: str) -> ReconciliationResult | None:
        row = self._conn.execute(select(_rec.result).where(_rec.run_id == run_id)).first()
        return ReconciliationResult.from_dict(row.result) if row else None

    def reconciliations(
        self,
        *,
        status: ReconciliationStatus | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
    ) -> list[ReconciliationResult]:
        query = select(_rec.result).order_by(_rec.reconciled_at_ms.desc(), _rec.run_id.desc())
        if status is not None:
            query = query.where(_rec.status == status.value)
        if tenant_id is not None:
            query = query.where(_rec.tenant_id == tenant_id)
        rows = self._conn.execute(query.limit(limit))
        return [ReconciliationResult.from_dict(row.result) for row in rows]

    def clear_run(self, run_id: str) -> None:
        self._conn.execute(delete(audit_expectations).where(_exp.run_id == run_id))
        self._conn.execute(delete(audit_acks).where(_ack.run_id == run_id))
        self._conn.execute(delete(audit_reconciliations).where(_rec.run_id == run_id))


def _expectation(row: Row[Any]) -> AuditExpectation:
    # The columns are the record's to_dict() keys, so from_dict reads a row as it is.
    return AuditExpectation.from_dict({**row._mapping, "metadata": row.metadata or {}})


def _ack_from_row(row: Row[Any]) -> DomainAck:
    return DomainAck.from_dict({**row._mapping, "metadata": row.metadata or {}})
