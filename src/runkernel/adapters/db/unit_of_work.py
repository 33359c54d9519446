"""The transaction boundary: one connection, one transaction, rolled back unless committed.

Callbacks registered with :meth:`SqlUnitOfWork.after_commit` run only once the commit has
succeeded (never on rollback), which is how wake-up signals stay after-commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Connection

from runkernel.adapters.audit_store.repository import SqlAuditRepository
from runkernel.adapters.db.engine import READ_ONLY, Database
from runkernel.adapters.db.incidents import SqlIncidentRepository
from runkernel.adapters.db.leases import SqlLeaseRepository
from runkernel.adapters.db.lessons import SqlLessonRepository
from runkernel.adapters.db.operators import SqlOperatorKeyRepository
from runkernel.adapters.db.outbox import SqlOutboxRepository
from runkernel.adapters.db.pauses import SqlPauseRepository
from runkernel.adapters.db.policies import SqlPolicyRepository
from runkernel.adapters.db.policy_checks import SqlPolicyCheckRepository
from runkernel.adapters.db.repositories import SqlRunRepository
from runkernel.adapters.db.tenancy import SqlAgentRepository, SqlTenantRepository
from runkernel.adapters.db.traces import SqlTraceRepository

log = logging.getLogger(__name__)


class SqlUnitOfWork:
    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self._db = db
        self._read_only = read_only
        self._hooks: list[Callable[[], None]] = []
        self._committed = False
        self._locked = False

    def __enter__(self) -> SqlUnitOfWork:
        if self._db.is_sqlite and not self._read_only:
            self._db.write_lock.acquire()
            self._locked = True
        try:
            conn = self._db.engine.connect()
            if self._read_only:
                conn = conn.execution_options(**{READ_ONLY: True})
            self.connection: Connection = conn
            self._tx = conn.begin()
        except BaseException:
            self._release()
            raise
        self.tenants = SqlTenantRepository(conn)
        self.operator_keys = SqlOperatorKeyRepository(conn)
        self.agents = SqlAgentRepository(conn)
        self.runs = SqlRunRepository(conn, self._db.dialect)
        self.incidents = SqlIncidentRepository(conn)
        self.policies = SqlPolicyRepository(conn)
        self.traces = SqlTraceRepository(conn)
        self.lessons = SqlLessonRepository(conn)
        self.audit = SqlAuditRepository(conn)
        self.outbox = SqlOutboxRepository(conn, self._db.dialect)
        self.leases = SqlLeaseRepository(conn)
        self.pauses = SqlPauseRepository(conn)
        self.policy_checks = SqlPolicyCheckRepository(conn)
        return self

    def commit(self) -> None:
        self._tx.commit()
        self._committed = True
        if not self._read_only:
            self._db.write_committed()

    def after_commit(self, hook: Callable[[], None]) -> None:
        self._hooks.append(hook)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed and self._tx.is_active:
                self._tx.rollback()
            self.connection.close()
        finally:
            self._release()
        if self._committed:
            for hook in self._hooks:
                try:
                    hook()
                except Exception:  # a wake-up hint must never undo a committed write
                    log.exception("after-commit hook failed")

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            self._db.write_lock.release()
