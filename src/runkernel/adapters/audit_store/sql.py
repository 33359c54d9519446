"""The SQL audit store, the crash-safe embedded default.

Two ways in. Inside a unit of work, ``SqlAuditStore.in_transaction(conn)`` gives a
:class:`SqlAuditRepository` that writes on the caller's connection and never commits, so
a run's expectations commit with the run itself. Standalone, each method of
:class:`SqlAuditStore` is its own short transaction (a ROLLED_BACK ack, written after the
completion's rollback, must not depend on that transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Connection

from runkernel.adapters.audit_store.repository import SqlAuditRepository
from runkernel.adapters.db.engine import READ_ONLY, Database
from runkernel.domain.audit import (
    AuditExpectation,
    DomainAck,
    ReconciliationResult,
    ReconciliationStatus,
)


class SqlAuditStore:
    durable = True

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def in_transaction(conn: Connection) -> SqlAuditRepository:
        """The store's operations on ``conn``, committed (or not) by its owner."""
        return SqlAuditRepository(conn)

    @contextmanager
    def _write(self) -> Iterator[SqlAuditRepository]:
        # SQLite has one writer; queue on the process lock like the unit of work does.
        lock: AbstractContextManager[object] = (
            self._db.write_lock if self._db.is_sqlite else nullcontext()
        )
        with lock, self._db.engine.begin() as conn:
            yield SqlAuditRepository(conn)

    @contextmanager
    def _read(self) -> Iterator[SqlAuditRepository]:
        with self._db.engine.connect() as conn:
            yield SqlAuditRepository(conn.execution_options(**{READ_ONLY: True}))

    def add_expectations(self, expectations: Sequence[AuditExpectation]) -> None:
        with self._write() as repo:
            repo.add_expectations(expectations)

    def add_ack(self, ack: DomainAck) -> None:
        with self._write() as repo:
            repo.add_ack(ack)

    def expectations(self, run_id: str) -> list[AuditExpectation]:
        with self._read() as repo:
            return repo.expectations(run_id)

    def acks(self, run_id: str) -> list[DomainAck]:
        with self._read() as repo:
            return repo.acks(run_id)

    def get_pending_run_ids(self, now_ms: int, *, limit: int = 100) -> list[str]:
        with self._read() as repo:
            return repo.get_pending_run_ids(now_ms, limit=limit)

    def save_reconciliation(
        self, result: ReconciliationResult, tenant_id: str | None, *, replace: bool = False
    ) -> bool:
        with self._write() as repo:
            return repo.save_reconciliation(result, tenant_id, replace=replace)

    def reconciliation(self, run_id: str) -> ReconciliationResult | None:
        with self._read() as repo:
            return repo.reconciliation(run_id)

    def reconciliations(
        self,
        *,
        status: ReconciliationStatus | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
    ) -> list[ReconciliationResult]:
        with self._read() as repo:
            return repo.reconciliations(status=status, tenant_id=tenant_id, limit=limit)

    def clear_run(self, run_id: str) -> None:
        with self._write() as repo:
            repo.clear_run(run_id)
