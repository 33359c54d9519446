"""Executing one claimed run: steps in order, retries with backoff, fenced writes.

Every write goes through the claim's fencing token; the moment another worker holds the
run, ``LeaseLostError`` stops this one and nothing more is written. A reclaimed run
resumes after its last recorded step, so a completed step never runs twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from runkernel.domain.plans import OnError, Plan, Step, TemplateError, plan_from_dict, render
from runkernel.domain.records import Claim, Run, RunBudget, StepRecord
from runkernel.domain.runs import PHASE_ORDER, Phase, RunStatus, path
from runkernel.domain.skills import SkillContext, SkillResult, Usage
from runkernel.errors import LeaseLostError, TransactionFailed
from runkernel.services.completion import Finish, RunCompletionTransaction
from runkernel.services.ports import Clock, SkillCatalog, UnitOfWorkFactory

log = logging.getLogger(__name__)


class Execution:
    """One in-flight claim, shared between the executing thread and the lease keeper."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.lost = False  # set by the lease keeper when a renewal finds the run taken
        self.release_requested = False  # set on shutdown once the drain time is up


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, try_number: int) -> float:
        return float(min(self.backoff_s * 2 ** (try_number - 1), self.backoff_max_s))


class RunExecutor:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        skills: SkillCatalog,
        clock: Clock,
        *,
        max_attempts: int,
        retry: RetryPolicy,
        completion: RunCompletionTransaction,
        completion_retries: int = 3,
    ) -> None:
        self._uow = uow
        self._skills = skills
        self._clock = clock
        self._max_attempts = max_attempts
        self._retry = retry
        self._completion = completion
        self._completion_retries = completion_retries

    def execute(self, run: Run, execution: Execution) -> str:
        """Drive ``run`` to a final state (or release it); returns the outcome's name."""
        try:
            return self._execute(run, execution)
        except LeaseLostError as exc:
            log.warning("%s; stopping without further writes", exc)
            return "lease_lost"

    def _execute(self, run: Run, execution: Execution) -> str:
        claim = execution.claim
        plan = plan_from_dict(run.plan)
        records = self._prior_steps(run)
        run = replace(run, steps=tuple(records))
        if run.attempt > self._max_attempts:
            return self._fail(
                run,
                claim,
                RunStatus.FAILED,
                "max_attempts_exceeded",
                f"run was claimed {run.attempt} times; the limit is {self._max_attempts}",
            )
        if run.attempt > 1:  # a first claim opened its trace in the claiming transaction
            self._completion.start(run)
        outputs = {r.step_id: r.output for r in records if r.status == "succeeded"}
        aborted = next(
            (r for r in records if r.status == "failed" and _aborts(plan, r.step_index)), None
        )
        if aborted is not None:
            # A previous attempt recorded an aborting failure but did not complete the run.
            return self._fail(run, claim, RunStatus.FAILED, "step_failed", _failure(aborted))
        cost, usage = run.cost_micros, run.usage
        started_ms = run.started_at_ms or self._clock.now_ms()
        cancel = run.cancel_requested
        for index in range(run.next_step, len(plan.steps)):
            if execution.lost:
                return "lease_lost"
            if cancel:
                return self._fail(
                    run, claim, RunStatus.CANCELLED, "cancelled", "cancelled on request"
                )
            if execution.release_requested:
                with self._uow() as uow:
                    uow.runs.release(claim, self._clock.now_ms())
                    uow.commit()
                return "released"
            exceeded = budget_exceeded(
                run.budget, cost, usage, index, self._clock.now_ms() - started_ms
            )
            if exceeded:
                return self._fail(run, claim, RunStatus.FAILED_POLICY, "budget_exceeded", exceeded)
            step = plan.steps[index]
            record = self._run_step(run, claim, index, step, outputs, execution)
            with self._uow() as uow:
                cancel = uow.runs.record_step(claim, record, now_ms=record.finished_at_ms)
                uow.commit()
            cost += record.cost_micros
            usage = usage + record.usage
            run = replace(run, steps=(*run.steps, record), cost_micros=cost, usage=usage)
            if record.status == "succeeded":
                outputs[step.step_id] = record.output
            elif step.on_error is OnError.ABORT:
                return self._fail(run, claim, RunStatus.FAILED, "step_failed", _failure(record))
        return self._succeed(run, claim, plan, outputs)

    def _prior_steps(self, run: Run) -> list[StepRecord]:
        if run.next_step == 0:
            return []
        with self._uow(read_only=True) as uow:
            return uow.runs.steps(run.id)

    def _run_step(
        self,
        run: Run,
        claim: Claim,
        index: int,
        step: Step,
        outputs: dict[str, Any],
        execution: Execution,
    ) -> StepRecord:
        started = time.perf_counter()
        params: Any = None
        result = SkillResult(error="not run")
        usage, cost, tries = Usage(), 0, 0
        for try_number in range(1, step.retries + 2):
            tries = try_number
            try:
                params = render(step.params, outputs)
            except TemplateError as exc:
                result = SkillResult(error=str(exc))
                break  # the same outputs give the same missing value: retrying cannot help
            context = SkillContext(run.id, run.tenant_id, step.step_id, claim.attempt, try_number)
            result = self._skills.invoke(step.skill, params, context)
            usage, cost = usage + result.usage, cost + result.cost_micros
            if result.ok or try_number > step.retries or execution.lost:
                break
            self._clock.sleep(self._retry.delay(try_number))
        return StepRecord(
            run_id=run.id,
            step_index=index,
            step_id=step.step_id,
            skill=step.skill,
            status="succeeded" if result.ok else "failed",
            input=params,
            output=result.output if result.ok else None,
            usage=usage,
            cost_micros=cost,
            duration_ms=int((time.perf_counter() - started) * 1000),
            error=result.error,
            attempt=claim.attempt,
            tries=tries,
            finished_at_ms=self._clock.now_ms(),
        )

    def _succeed(self, run: Run, claim: Claim, plan: Plan, outputs: dict[str, Any]) -> str:
        now = self._clock.now_ms()
        reasons = {
            Phase.GOVERNANCE_CHECK: "all steps done",
            Phase.FINALIZING: "governance checked",
            Phase.COMPLETED: "completed",
        }
        remaining = PHASE_ORDER[PHASE_ORDER.index(run.phase) + 1 :]
        statuses = {Phase.COMPLETED: RunStatus.SUCCEEDED}
        chain = path(
            (run.phase, RunStatus.RUNNING),
            *((p, statuses.get(p, RunStatus.RUNNING), reasons[p]) for p in remaining),
            at_ms=now,
        )
        return self._finish(run, claim, Finish(chain, output=run_output(plan, outputs)))

    def _fail(self, run: Run, claim: Claim, status: RunStatus, code: str, message: str) -> str:
        chain = path(
            (run.phase, RunStatus.RUNNING),
            (Phase.FAILED, status, message),
            at_ms=self._clock.now_ms(),
        )
        return self._finish(run, claim, Finish(chain, error_code=code, error_message=message))

    def _finish(self, run: Run, claim: Claim, finish: Finish) -> str:
        """Complete atomically, retrying a rolled-back completion; if it keeps failing the
        run is left to lease expiry, and whoever reclaims it completes it."""
        for attempt in range(self._completion_retries + 1):
            try:
                return self._completion.complete(run, claim, finish).status.value
            except TransactionFailed as exc:
                log.warning("run %s: %s (try %d)", run.id, exc, attempt + 1)
                if attempt < self._completion_retries:
                    self._clock.sleep(self._retry.delay(attempt + 1))
        return "completion_failed"


def budget_exceeded(
    budget: RunBudget, cost_micros: int, usage: Usage, steps_done: int, elapsed_ms: int
) -> str | None:
    """Why the run may not start another step, or None."""
    if budget.max_cost_micros is not None and cost_micros >= budget.max_cost_micros:
        return f"cost {cost_micros} micros reached the limit of {budget.max_cost_micros}"
    if budget.max_tokens is not None and usage.total_tokens >= budget.max_tokens:
        return f"{usage.total_tokens} tokens reached the limit of {budget.max_tokens}"
    if budget.max_steps is not None and steps_done >= budget.max_steps:
        return f"{steps_done} steps reached the limit of {budget.max_steps}"
    if budget.timeout_s is not None and elapsed_ms >= budget.timeout_s * 1000:
        return f"run time {elapsed_ms} ms reached the timeout of {budget.timeout_s} s"
    return None


def _aborts(plan: Plan, index: int) -> bool:
    return index < len(plan.steps) and plan.steps[index].on_error is OnError.ABORT


def _failure(record: StepRecord) -> str:
    return f"step {record.step_id!r} ({record.skill}) failed: {record.error}"


def run_output(plan: Plan, outputs: dict[str, Any]) -> Any:
    """Outputs of steps with an ``output_key``, by key; else the last step's output."""
    keyed = {s.output_key: outputs.get(s.step_id) for s in plan.steps if s.output_key}
    if keyed:
        return keyed
    for step in reversed(plan.steps):
        if step.step_id in outputs:
            return outputs[step.step_id]
    return None
