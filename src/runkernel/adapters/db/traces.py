"""SQL for run traces (runkernel's own record; sinks export copies). Repositories never
commit, roll back or begin (DESIGN invariant 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from runkernel.adapters.db.inserts import insert_ignore
from runkernel.adapters.db.tables import traces

_START_TRACE = traces
_COMPLETE_TRACE = (
    update(traces)
    .where(traces.c.run_id == bindparam("p_run_id"))
    .values(
        status=bindparam("p_status"),
        sink_error=bindparam("p_sink_error"),
        completed_at_ms=bindparam("p_now"),
    )
)


class SqlTraceRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def start(self, *, run_id: str, tenant_id: str, now_ms: int) -> bool:
        """Open the run's trace; False if a previous attempt already opened it."""
        values = {"run_id": run_id, "tenant_id": tenant_id, "status": "started"}
        result = self._conn.execute(
            insert_ignore(_START_TRACE, self._conn), {**values, "started_at_ms": now_ms}
        )
        return result.first() is not None

    def start_fresh(self, rows: list[tuple[str, str]], *, now_ms: int) -> None:
        """Open the traces of runs claimed for the first time, ``(run_id, tenant_id)`` each:
        a first claim cannot meet an existing trace, so one plain batch insert does."""
        if rows:
            self._conn.execute(
                _START_TRACE.insert(),
                [
                    {"run_id": r, "tenant_id": t, "status": "started", "started_at_ms": now_ms}
                    for r, t in rows
                ],
            )

    def complete(self, run_id: str, *, status: str, sink_error: str | None, now_ms: int) -> bool:
        result = self._conn.execute(
            _COMPLETE_TRACE,
            {"p_run_id": run_id, "p_status": status, "p_sink_error": sink_error, "p_now": now_ms},
        )
        return result.rowcount == 1

    def get(self, run_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(select(traces).where(traces.c.run_id == run_id)).first()
        return dict(row._mapping) if row else None
