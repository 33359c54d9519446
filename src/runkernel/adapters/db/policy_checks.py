"""SQL for ``run_policy_checks``: the mid-run decisions kept with a run. Never commits."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from runkernel.adapters.db.tables import run_policy_checks
from runkernel.domain.midrun import CheckDecision, Finding, PolicyCheckResult, ViolationType


class SqlPolicyCheckRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, tenant_id: str, run_id: str, check: PolicyCheckResult) -> None:
        self._conn.execute(
            insert(run_policy_checks).values(
                run_id=run_id,
                tenant_id=tenant_id,
                step_index=check.step_index,
                decision=check.decision.value,
                reason=check.reason,
                violations=[f.to_dict() for f in check.violations],
                checked_at_ms=check.checked_at_ms,
                duration_ms=check.duration_ms,
            )
        )

    def for_run(self, run_id: str) -> list[PolicyCheckResult]:
        rows = self._conn.execute(
            select(run_policy_checks)
            .where(run_policy_checks.c.run_id == run_id)
            .order_by(run_policy_checks.c.id)
        )
        return [
            PolicyCheckResult(
                decision=CheckDecision(r.decision),
                reason=r.reason,
                violations=tuple(
                    Finding(ViolationType(v["type"]), v["message"]) for v in r.violations or ()
                ),
                checked_at_ms=r.checked_at_ms,
                duration_ms=float(r.duration_ms),
                step_index=r.step_index,
            )
            for r in rows
        ]
