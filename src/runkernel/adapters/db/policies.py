"""SQL for policy rules and the one evaluation of each run. Repositories never commit,
roll back or begin (DESIGN invariant 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from runkernel.adapters.db.inserts import insert_ignore
from runkernel.adapters.db.tables import policy_evaluations, policy_rules
from runkernel.domain.policy import Enforcement, PolicyRule, RuleKind, RuleStatus, Scope

_INSERT_EVALUATION = policy_evaluations
_ACTIVE_RULES = select(policy_rules).where(
    policy_rules.c.tenant_id == bindparam("p_tenant_id"), policy_rules.c.status == "ACTIVE"
)


class SqlPolicyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def active_rules(self, tenant_id: str) -> list[PolicyRule]:
        rows = self._conn.execute(_ACTIVE_RULES, {"p_tenant_id": tenant_id})
        return [rule_from_row(r) for r in rows]

    def rules(self, tenant_id: str, *, include_retired: bool = False) -> list[PolicyRule]:
        query = select(policy_rules).where(policy_rules.c.tenant_id == tenant_id)
        if not include_retired:
            query = query.where(policy_rules.c.status == "ACTIVE")
        return [rule_from_row(r) for r in self._conn.execute(query.order_by(policy_rules.c.id))]

    def get(self, tenant_id: str, rule_id: str) -> PolicyRule | None:
        row = self._conn.execute(
            select(policy_rules).where(
                policy_rules.c.tenant_id == tenant_id, policy_rules.c.id == rule_id
            )
        ).first()
        return rule_from_row(row) if row else None

    def add(self, rule: PolicyRule) -> None:
        self._conn.execute(insert(policy_rules).values(**_rule_values(rule)))

    def save(self, rule: PolicyRule, *, expected_version: int) -> bool:
        """Store a changed rule; False when someone else changed it first."""
        values = _rule_values(rule)
        del values["id"], values["tenant_id"], values["created_at_ms"]
        result = self._conn.execute(
            update(policy_rules)
            .where(policy_rules.c.id == rule.id, policy_rules.c.version == expected_version)
            .values(**values)
        )
        return result.rowcount == 1

    def add_evaluation(
        self,
        *,
        evaluation_id: str,
        tenant_id: str,
        run_id: str,
        evaluation: dict[str, Any],
        now_ms: int,
    ) -> bool:
        """Insert the run's evaluation; False when the run already has one."""
        result = self._conn.execute(
            insert_ignore(_INSERT_EVALUATION, self._conn),
            {
                "id": evaluation_id,
                "tenant_id": tenant_id,
                "run_id": run_id,
                "outcome": evaluation["outcome"],
                "violations": evaluation["violations"],
                "rules": evaluation["rules"],
                "evaluated_at_ms": now_ms,
            },
        )
        return result.first() is not None

    def evaluation(self, run_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            select(policy_evaluations).where(policy_evaluations.c.run_id == run_id)
        ).first()
        if row is None:
            return None
        return {
            "id": row.id,
            "run_id": row.run_id,
            "outcome": row.outcome,
            "violations": row.violations,
            "rules": row.rules,
            "evaluated_at_ms": row.evaluated_at_ms,
        }


def _rule_values(rule: PolicyRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "tenant_id": rule.tenant_id,
        "agent_id": rule.agent_id,
        "kind": rule.kind.value,
        "params": dict(rule.params),
        "enforcement": rule.enforcement.value,
        "scope": rule.scope.value,
        "status": rule.status.value,
        "version": rule.version,
        "created_at_ms": rule.created_at_ms,
        "updated_at_ms": rule.updated_at_ms,
    }


def rule_from_row(r: Row[Any]) -> PolicyRule:
    return PolicyRule(
        id=r.id,
        tenant_id=r.tenant_id,
        agent_id=r.agent_id,
        kind=RuleKind(r.kind),
        params=r.params,
        enforcement=Enforcement(r.enforcement),
        scope=Scope(r.scope),
        status=RuleStatus(r.status),
        version=r.version,
        created_at_ms=r.created_at_ms,
        updated_at_ms=r.updated_at_ms,
    )
