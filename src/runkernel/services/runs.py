"""Submitting, reading and cancelling runs (T0 and the read side of the API)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runkernel.domain.audit import AuditExpectation, create_run_expectations
from runkernel.domain.idempotency import request_fingerprint
from runkernel.domain.ids import new_id
from runkernel.domain.midrun import PolicyCheckResult
from runkernel.domain.permissions import Permission, require
from runkernel.domain.plans import parse_plan
from runkernel.domain.policy import PlanCheck, describe
from runkernel.domain.records import Agent, Principal, Run, RunBudget
from runkernel.domain.runs import Phase, RunStatus, Transition, is_terminal, path, transition
from runkernel.domain.skills import Usage
from runkernel.domain.storable import check_storable
from runkernel.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PolicyDeniedError,
    ValidationError,
)
from runkernel.services import policies
from runkernel.services.completion import RunCompletionTransaction
from runkernel.services.paging import check_choice, check_limit, page
from runkernel.services.ports import (
    AuditStore,
    Clock,
    SkillCatalog,
    UnitOfWorkFactory,
    WakeupSignal,
)

POLICY_DENIED = PolicyDeniedError.code


@dataclass(frozen=True, slots=True)
class Limits:
    max_plan_steps: int = 100
    max_payload_bytes: int = 262_144


@dataclass(frozen=True, slots=True)
class ExpectationPolicy:
    """Where and with which deadlines a run's audit expectations are stored at T0."""

    store: AuditStore
    in_transaction: bool  # the SQL store: in the run's own transaction
    run_timeout_s: float
    grace_period_ms: int

    def expectations(self, run: Run, now_ms: int) -> list[AuditExpectation]:
        timeout_s = run.budget.timeout_s or self.run_timeout_s
        return create_run_expectations(
            run.id,
            tenant_id=run.tenant_id,
            run_timeout_ms=int(timeout_s * 1000),
            grace_period_ms=self.grace_period_ms,
            now_ms=now_ms,
        )


@dataclass(frozen=True, slots=True)
class Submitted:
    run: Run
    created: bool  # False when an idempotency key returned an existing run


class RunService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        skills: SkillCatalog,
        clock: Clock,
        wakeup: WakeupSignal,
        limits: Limits,
        expectations: ExpectationPolicy,
        completion: RunCompletionTransaction,
    ) -> None:
        self._uow = uow
        self._skills = skills
        self._clock = clock
        self._wakeup = wakeup
        self._limits = limits
        self._expectations = expectations
        self._completion = completion

    def submit(
        self,
        principal: Principal,
        *,
        agent_id: str,
        plan: Any,
        budget: RunBudget | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Submitted:
        """Validate, authorize and enqueue a run in one transaction (T0).

        A run the agent's budget cannot pay for is recorded FAILED (failed_policy), never
        dropped, so the denial stays inspectable. A plan that breaks a BLOCK policy rule is
        recorded the same way and raises ``PolicyDeniedError`` (naming the stored run);
        WARN and AUDIT violations are noted in the reason of its "authorized" transition.
        An ``idempotency_key`` already used by the tenant returns that run when the request
        is the same (and raises the same ``PolicyDeniedError`` when that run was refused),
        and is a ``ConflictError`` (``idempotency_conflict``) when it is not."""
        require(principal, Permission.SUBMIT_RUN)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise ValidationError("idempotency_key must be 1-200 characters")
        try:
            check_storable({"plan": plan, "metadata": metadata or {}})
        except ValueError as exc:
            raise ValidationError(str(exc), code="unstorable_input") from exc
        size = len(json.dumps(plan, default=str))
        if size > self._limits.max_payload_bytes:
            raise PayloadTooLargeError(
                f"plan is {size} bytes; the limit is {self._limits.max_payload_bytes}"
            )
        parsed = parse_plan(
            plan, max_steps=self._limits.max_plan_steps, validate_skill=self._skills.validate
        ).to_dict()
        budget = budget or RunBudget()
        fingerprint = request_fingerprint(
            agent_id=agent_id, plan=parsed, budget=budget, metadata=metadata
        )
        run = _new_run(
            principal,
            agent_id,
            parsed,
            budget,
            metadata,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            now=self._clock.now_ms(),
        )
        try:
            submitted = self._insert(run)
        except ConflictError:
            # Two submissions raced on one idempotency key; the other one won.
            if idempotency_key is None:
                raise
            with self._uow(read_only=True) as uow:
                existing = uow.runs.find_by_idempotency_key(principal.tenant_id, idempotency_key)
            if existing is None:
                raise
            submitted = Submitted(existing, created=False)
        if not submitted.created:
            _check_same_request(submitted.run, fingerprint)
        if submitted.run.error_code == POLICY_DENIED:
            with self._uow(read_only=True) as uow:
                raise policies.refusal(uow, submitted.run)
        return submitted

    def _insert(self, run: Run) -> Submitted:
        """Authorize and store ``run`` with its expectations; or, storing nothing, the run
        its idempotency key already names."""
        now = run.created_at_ms
        with self._uow() as uow:
            if run.idempotency_key:
                existing = uow.runs.find_by_idempotency_key(run.tenant_id, run.idempotency_key)
                if existing is not None:
                    return Submitted(existing, created=False)
            agent = uow.agents.get(run.tenant_id, run.agent_id)
            if agent is None:
                # Like an id in a path: nothing of that id is visible to this tenant.
                raise NotFoundError(f"no agent {run.agent_id!r}", code="unknown_agent")
            steps, error = _authorize(run, agent, policies.check_plan(uow, run), now)
            created = transition(
                None, None, Phase.CREATED, RunStatus.QUEUED, at_ms=now, reason="submitted"
            )
            final = steps[-1]
            run = replace(
                run,
                phase=final.to_phase,
                status=final.to_status,
                error_code=error[0] if error else None,
                error_message=error[1] if error else None,
                finished_at_ms=now if error else None,
            )
            uow.runs.add(run, [created, *steps])
            # The expectations exist before the run can be claimed (DESIGN, T0).
            expected = self._expectations.expectations(run, now)
            if self._expectations.in_transaction:
                uow.audit.add_expectations(expected)
            else:
                self._expectations.store.add_expectations(expected)
            denied_acks = []
            if error is None:
                uow.runs.notify_new_runs()
                uow.after_commit(self._wakeup.notify)
            else:
                denied_acks = self._completion.record_unclaimed(uow, run)
            uow.commit()
        if denied_acks:
            self._completion.acks_committed(denied_acks)
        return Submitted(run, created=True)

    def get(self, principal: Principal, run_id: str) -> Run:
        require(principal, Permission.READ_RUNS)
        with self._uow(read_only=True) as uow:
            run = uow.runs.get(principal.tenant_id, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return run

    def policy_checks(self, principal: Principal, run_id: str) -> list[PolicyCheckResult]:
        """The mid-run checks that paused or ended the run, oldest first."""
        require(principal, Permission.READ_RUNS)
        with self._uow(read_only=True) as uow:
            if uow.runs.get(principal.tenant_id, run_id, details=False) is None:
                raise NotFoundError(f"no run {run_id!r}")
            return uow.policy_checks.for_run(run_id)

    def search(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Run], str | None]:
        """One page of runs, newest first, and the cursor of the next page (or None)."""
        require(principal, Permission.READ_RUNS)
        check_choice("status", status, RunStatus)
        check_limit(limit)
        with self._uow(read_only=True) as uow:
            found = uow.runs.search(
                principal.tenant_id,
                status=status,
                agent_id=agent_id,
                limit=limit + 1,
                before_id=cursor,
            )
        return page(found, limit, key=lambda run: run.id)

    def cancel(self, principal: Principal, run_id: str) -> Run:
        """Cancel a queued run at once; ask the worker of a running one to stop at the
        next step boundary."""
        require(principal, Permission.CANCEL_RUN)
        now = self._clock.now_ms()
        with self._uow() as uow:
            run = uow.runs.get(principal.tenant_id, run_id, details=False)
            if run is None:
                raise NotFoundError(f"no run {run_id!r}")
            if is_terminal(run.phase):
                raise ConflictError(f"run is already {run.status.value}", code="run_already_final")
            if run.status is RunStatus.QUEUED:
                done = transition(
                    run.phase,
                    run.status,
                    Phase.FAILED,
                    RunStatus.CANCELLED,
                    at_ms=now,
                    reason=f"cancelled by key {principal.key_id}",
                )
                acks = []
                if uow.runs.cancel_queued(run, done):
                    cancelled = replace(
                        run,
                        phase=done.to_phase,
                        status=done.to_status,
                        error_code="cancelled",
                        finished_at_ms=now,
                    )
                    acks = self._completion.record_unclaimed(uow, cancelled)
                else:
                    uow.runs.request_cancel(principal.tenant_id, run_id, now)
            else:
                acks = []
                uow.runs.request_cancel(principal.tenant_id, run_id, now)
            uow.commit()
        if acks:
            self._completion.acks_committed(acks)
        return self.get(principal, run_id)


def _authorize(
    run: Run, agent: Agent, plan: PlanCheck, now: int
) -> tuple[list[Transition], tuple[str, str] | None]:
    """The run's way out of CREATED, and the error of a denial: a plan the tenant's BLOCK
    rules refuse (whatever the budget), an agent that has spent its budget, or authorized."""
    if plan.refused:
        why = f"refused by policy: {describe(plan.blocking)}"
        error: tuple[str, str] | None = (POLICY_DENIED, why)
    elif agent.spent_micros >= agent.budget_micros:
        why = "agent budget exhausted"
        error = ("agent_budget_exhausted", f"agent {agent.name!r} has spent its budget")
    else:
        notes = describe(plan.noted)
        reason = f"authorized; policy noted: {notes}" if notes else "authorized"
        return path(
            (Phase.CREATED, RunStatus.QUEUED),
            (Phase.AUTHORIZED, RunStatus.QUEUED, reason),
            at_ms=now,
        ), None
    return path(
        (Phase.CREATED, RunStatus.QUEUED),
        (Phase.FAILED, RunStatus.FAILED_POLICY, why),
        at_ms=now,
    ), error


def _check_same_request(existing: Run, fingerprint: str) -> None:
    """A repeated idempotency key must come with the request it was first used for. Runs
    stored before fingerprints existed (None) are returned as they always were."""
    if existing.request_fingerprint not in (None, fingerprint):
        raise ConflictError(
            f"idempotency key {existing.idempotency_key!r} was already used for a different "
            f"request (run {existing.id}); send the same request again, or use a new key",
            code="idempotency_conflict",
        )


def _new_run(
    principal: Principal,
    agent_id: str,
    plan: dict[str, Any],
    budget: RunBudget,
    metadata: Mapping[str, Any] | None,
    *,
    idempotency_key: str | None,
    fingerprint: str,
    now: int,
) -> Run:
    return Run(
        id=new_id("run"),
        tenant_id=principal.tenant_id,
        agent_id=agent_id,
        status=RunStatus.QUEUED,
        phase=Phase.CREATED,
        plan=plan,
        budget=budget,
        metadata=dict(metadata or {}),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        submitted_key_id=principal.key_id,
        attempt=0,
        lease_owner=None,
        lease_expires_at_ms=None,
        next_step=0,
        usage=Usage(),
        cost_micros=0,
        error_code=None,
        error_message=None,
        output=None,
        observability_status="OK",
        risk_level="NORMAL",
        cancel_requested=False,
        created_at_ms=now,
        updated_at_ms=now,
        started_at_ms=None,
        finished_at_ms=None,
    )
