"""A tenant's policy rules (create, list, change, retire), the check of a plan at
submission, and the evaluation of a run.

Changing rules is a tenant-admin operation (``runkernel.domain.permissions``): a user key
could otherwise retire the BLOCK rule that stops it. Every change bumps the rule's
version (evaluations cite the version they judged by) and is stored only if nobody
changed the rule in between — a lost race is a 409, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runkernel.domain import policy
from runkernel.domain.ids import new_id
from runkernel.domain.outcomes import from_run
from runkernel.domain.permissions import Permission, require
from runkernel.domain.policy import Enforcement, PlanCheck, PolicyRule, RuleStatus, Scope
from runkernel.domain.records import Principal, Run
from runkernel.errors import ConflictError, NotFoundError, PolicyDeniedError, ValidationError
from runkernel.services.ports import Clock, UnitOfWork, UnitOfWorkFactory

# Scope and agent are fixed at creation: moving a rule to another agent is a new rule,
# and keeping them out of edits spares re-checking the agent on every change.
EDITABLE = frozenset({"params", "enforcement", "status"})


class PolicyService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def create(
        self,
        principal: Principal,
        *,
        kind: str,
        params: Mapping[str, Any],
        enforcement: str = Enforcement.BLOCK,
        scope: str = Scope.TENANT,
        agent_id: str | None = None,
    ) -> PolicyRule:
        """A new ACTIVE rule at version 1."""
        require(principal, Permission.CHANGE_POLICIES)
        rule = policy.new_rule(
            id=new_id("pol"),
            tenant_id=principal.tenant_id,
            kind=kind,
            params=params,
            enforcement=enforcement,
            scope=scope,
            agent_id=agent_id,
            now_ms=self._clock.now_ms(),
        )
        with self._uow() as uow:
            add_rule(uow, rule)
            uow.commit()
        return rule

    def rules(self, principal: Principal, *, include_retired: bool = False) -> list[PolicyRule]:
        require(principal, Permission.READ_POLICIES)
        with self._uow(read_only=True) as uow:
            return uow.policies.rules(principal.tenant_id, include_retired=include_retired)

    def get(self, principal: Principal, rule_id: str) -> PolicyRule:
        require(principal, Permission.READ_POLICIES)
        with self._uow(read_only=True) as uow:
            return _load(uow, principal, rule_id)

    def change(
        self,
        principal: Principal,
        rule_id: str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> PolicyRule:
        """Apply ``changes`` (params, enforcement, status) as version + 1. With
        ``expected_version`` the change applies only to that version of the rule."""
        require(principal, Permission.CHANGE_POLICIES)
        fixed = sorted(set(changes) - EDITABLE)
        if fixed:
            raise ValidationError(
                f"cannot change {', '.join(fixed)} of a rule; create a new rule instead"
            )
        return self._update(principal, rule_id, changes, expected_version)

    def retire(
        self, principal: Principal, rule_id: str, *, expected_version: int | None = None
    ) -> PolicyRule:
        """RETIRED, version + 1: kept for the evaluations that cite it, never evaluated
        again. Retiring a retired rule is a conflict."""
        require(principal, Permission.CHANGE_POLICIES)
        return self._update(principal, rule_id, {"status": RuleStatus.RETIRED}, expected_version)

    def evaluation(self, principal: Principal, run_id: str) -> dict[str, Any]:
        """The run's policy evaluation; it is written with the final status, so a run that
        is not final yet has none: a ``ConflictError`` with the run's state (the run
        exists, so "not found" would say the wrong thing)."""
        require(principal, Permission.READ_RUNS)
        with self._uow(read_only=True) as uow:
            run = uow.runs.get(principal.tenant_id, run_id, details=False)
            if run is None:
                raise NotFoundError(f"no run {run_id!r}")
            found = uow.policies.evaluation(run_id)
        if found is None:
            raise ConflictError(
                f"run {run_id!r} has no policy evaluation yet (it is {run.status.value}); "
                "a run is evaluated when it is final",
                code="evaluation_pending",
            )
        return found

    def _update(
        self,
        principal: Principal,
        rule_id: str,
        changes: Mapping[str, Any],
        expected_version: int | None,
    ) -> PolicyRule:
        with self._uow() as uow:
            rule = _load(uow, principal, rule_id)
            if expected_version is not None and rule.version != expected_version:
                raise _version_conflict(rule_id, f"is at version {rule.version}")
            changed = policy.bump(rule, changes, self._clock.now_ms())
            if not uow.policies.save(changed, expected_version=rule.version):
                raise _version_conflict(rule_id, "was changed by someone else meanwhile")
            uow.commit()
        return changed


def check_plan(uow: UnitOfWork, run: Run) -> PlanCheck:
    """The tenant's active rules (one query, in the submission's transaction) applied to
    the plan and budget of ``run``, which is about to be stored."""
    return policy.check_plan(uow.policies.active_rules(run.tenant_id), from_run(run))


def refusal(uow: UnitOfWork, run: Run) -> PolicyDeniedError:
    """The error of a run the plan check refused, from what was stored for it, so a
    repeat of the request (same idempotency key) answers what the first one did."""
    found = uow.policies.evaluation(run.id)
    violations = [
        v for v in (found or {}).get("violations", []) if v["enforcement"] == Enforcement.BLOCK
    ]
    return PolicyDeniedError(
        f"{run.error_message} (run {run.id}, stored as {run.status.value})",
        run_id=run.id,
        violations=violations,
    )


def add_rule(uow: UnitOfWork, rule: PolicyRule) -> None:
    """Insert ``rule`` after checking its agent is one of the tenant's (a foreign or
    unknown agent would otherwise surface as a database error)."""
    if rule.agent_id is not None and uow.agents.get(rule.tenant_id, rule.agent_id) is None:
        raise NotFoundError(f"no agent {rule.agent_id!r}", code="unknown_agent")
    uow.policies.add(rule)


def _load(uow: UnitOfWork, principal: Principal, rule_id: str) -> PolicyRule:
    rule = uow.policies.get(principal.tenant_id, rule_id)
    if rule is None:
        raise NotFoundError(f"no policy rule {rule_id!r}")
    return rule


def _version_conflict(rule_id: str, why: str) -> ConflictError:
    return ConflictError(
        f"policy rule {rule_id!r} {why}; read it again and retry", code="rule_version_conflict"
    )
