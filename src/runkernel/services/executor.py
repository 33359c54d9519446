"""Executing one claimed run: steps in order, retries with backoff, fenced writes.

Every write goes through the claim's fencing token (its epoch); the moment another worker holds the
run, ``LeaseLostError`` stops this one and nothing more is written. A reclaimed run
resumes after its last recorded step, so a completed step never runs twice.

Before its skill is called, a step reserves its worst-case cost against the run's and the
agent's budgets (DESIGN invariant 7), in a short transaction of its own; one that does not
fit ends the run ``failed_policy`` / ``budget_exceeded`` without the call. The reservation
settles to the step's cost in the transaction that records the step.

Nothing a step does can crash its attempt: a template that does not resolve, a skill that
raises or returns something odd, an input or output that is too large or cannot be
stored — each is a failed step with its reason, and what is stored in place of a value
that could not be is a small marker (``storable.bounded``). A failed step keeps its output
(an HTTP error's status and body), which later templates may read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from runkernel.domain import budgets
from runkernel.domain.budgets import OnBudget
from runkernel.domain.midrun import CheckDecision, PolicyCheckResult, ViolationType
from runkernel.domain.pauses import PauseReason
from runkernel.domain.plans import (
    OnError,
    Plan,
    RenderTooLarge,
    Step,
    TemplateError,
    plan_from_dict,
    render,
)
from runkernel.domain.records import Claim, Requests, Run, StepRecord
from runkernel.domain.runs import PHASE_ORDER, Phase, RunStatus, path
from runkernel.domain.skills import Lowered, SkillContext, SkillResult, Usage
from runkernel.domain.storable import SizeLimit, bounded, omitted, printable, too_large
from runkernel.errors import LeaseLostError, StorageUnavailableError, TransactionFailed
from runkernel.services.completion import Finish, RunCompletionTransaction
from runkernel.services.midrun import MidExecutionPolicyChecker, NextStep, RunWatch
from runkernel.services.pauses import PauseManager
from runkernel.services.ports import Clock, SkillCatalog, UnitOfWork, UnitOfWorkFactory
from runkernel.services.thresholds import tell_crossings

log = logging.getLogger(__name__)

# An error message quotes what a skill saw (a URL, a body); this much of it is kept.
MAX_ERROR_CHARS = 4000
# How often a capped step re-reads what is left when concurrent runs took it first.
CAP_TRIES = 3


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


@dataclass(frozen=True, slots=True)
class StepLimits:
    """How large a step's rendered input and its output may be once stored."""

    input: SizeLimit
    output: SizeLimit


class RunExecutor:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        skills: SkillCatalog,
        clock: Clock,
        *,
        max_attempts: int,
        retry: RetryPolicy,
        limits: StepLimits,
        completion: RunCompletionTransaction,
        completion_retries: int = 3,
        default_step_cost_micros: int = 0,
        pauses: PauseManager | None = None,
        checker: MidExecutionPolicyChecker | None = None,
        cap_min_tokens: int = 16,
    ) -> None:
        self._uow = uow
        self._skills = skills
        self._clock = clock
        self._max_attempts = max_attempts
        self._retry = retry
        self._limits = limits
        self._completion = completion
        self._completion_retries = completion_retries
        self._default_cost = default_step_cost_micros
        self._pauses = pauses
        self._checker = checker or MidExecutionPolicyChecker(uow, clock)
        self._cap_min_tokens = cap_min_tokens

    def execute(self, run: Run, execution: Execution) -> str:
        """Drive ``run`` to a final state (or release it); returns the outcome's name."""
        try:
            return self._execute(run, execution)
        except LeaseLostError as exc:
            log.warning("%s; stopping without further writes", exc)
            return "lease_lost"
        except StorageUnavailableError as exc:
            # Nothing can be written, not even a failure: the lease expires and whoever
            # claims the run next resumes it after its last recorded step.
            log.warning("run %s: %s; left to lease expiry", run.id, exc)
            return "storage_unavailable"

    def _execute(self, run: Run, execution: Execution) -> str:
        claim = execution.claim
        try:
            plan = plan_from_dict(run.plan)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A row from before the storage limits may read back as an omitted marker.
            message = f"the stored plan cannot be read back: {type(exc).__name__}: {exc}"
            return self._fail(run, claim, RunStatus.FAILED, "unreadable_plan", message)
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
        if run.claim_epoch > 1:  # a first claim opened its trace in the claiming transaction
            self._completion.start(run)
        outputs = dict(_readable(records))
        aborted = next(
            (r for r in records if r.status == "failed" and _aborts(plan, r.step_index)), None
        )
        if aborted is not None:
            # A previous attempt recorded an aborting failure but did not complete the run.
            return self._fail(run, claim, RunStatus.FAILED, "step_failed", _failure(aborted))
        cost, usage = run.cost_micros, run.usage
        requests = Requests(cancel=run.cancel_requested, pause=run.pause_requested)
        watch = RunWatch()
        held = 0  # the run's escrow (runs.reserved_micros): the claim released any before
        for index in range(run.next_step, len(plan.steps)):
            if execution.lost:
                return "lease_lost"
            step = plan.steps[index]
            params, refused = self._input(step, outputs)
            need = 0 if refused is not None else self._worst_case(step, params)
            want = budgets.escrow(need, len(plan.steps) - index, run.budget.max_cost_micros, cost)
            check, held, sliced = self._check(
                (run, claim),
                NextStep(index, step.skill, params),
                (usage, cost),
                watch,
                (requests, execution),
                (held, need, want),
            )
            if check.decision is CheckDecision.TERMINATE:
                return self._terminate(run, claim, check)
            if check.decision is CheckDecision.PAUSE:
                return self._pause(run, claim, check)
            if requests.pause and self._pauses is not None:
                # Between two steps: the pause ends the lease, so the slot is free.
                self._pauses.pause_at_boundary(run, claim, step_index=index)
                return "paused"
            if execution.release_requested:
                with self._uow() as uow:
                    uow.runs.release(claim, self._clock.now_ms())
                    uow.commit()
                return "released"
            refusal = budgets.run_refusal(run.budget.max_cost_micros, cost, need)
            own_limit = refusal is not None
            if refusal is None:
                held, fits = self._hold(claim, held, need, 0 if sliced else want)
                if not fits:
                    refusal = budgets.agent_refusal(need)
            capped: Lowered | None = None
            if refusal is not None:
                over = self._over_budget(run, claim, step, params, (cost, need), own_limit, refusal)
                if isinstance(over, str):
                    return over
                capped, lowered = over
                held += lowered
                params = capped.params
            record = self._run_step(run, claim, index, step, (params, refused), execution)
            if capped is not None:
                record = replace(record, input={**capped.params, "budget_cap": capped.note})
            with self._uow() as uow:
                recorded = uow.runs.record_step(
                    claim, record, now_ms=record.finished_at_ms, reserved_micros=held
                )
                tell_crossings(uow, run, claim, record, recorded)
                uow.commit()
            held = max(held - record.cost_micros, 0)
            requests = recorded.requests
            cost += record.cost_micros
            usage = usage + record.usage
            run = replace(run, steps=(*run.steps, record), cost_micros=cost, usage=usage)
            outputs.update(_readable([record]))
            if record.status != "succeeded" and step.on_error is OnError.ABORT:
                return self._fail(run, claim, RunStatus.FAILED, "step_failed", _failure(record))
        return self._succeed(run, claim, plan)

    def _terminate(self, run: Run, claim: Claim, check: PolicyCheckResult) -> str:
        """End the run as the check decided, the check kept in the completion's
        transaction: cancelled for a manual stop, else failed_policy."""
        stopped = check.deciding is ViolationType.MANUAL_STOP
        status = RunStatus.CANCELLED if stopped else RunStatus.FAILED_POLICY
        message = "cancelled on request" if stopped else check.reason
        return self._fail(run, claim, status, check.error_code, message, check=check)

    def _pause(self, run: Run, claim: Claim, check: PolicyCheckResult) -> str:
        if self._pauses is None:  # nothing can hold the run: it must not go on unchecked
            return self._fail(run, claim, RunStatus.FAILED_POLICY, "policy_check", check.reason)
        self._pauses.pause_at_boundary(
            run,
            claim,
            check.pause_reason,
            message=check.reason,
            violations=tuple(t.value for t in check.types),
            step_index=check.step_index,
            check=check,
        )
        return "paused"

    def _worst_case(self, step: Step, params: Any) -> int:
        estimated = self._skills.estimate(step.skill, params)
        per_call = budgets.per_call(estimated, step.estimated_cost_micros, self._default_cost)
        return budgets.worst_case(per_call, step.retries)

    def _over_budget(
        self,
        run: Run,
        claim: Claim,
        step: Step,
        params: Any,
        amounts: tuple[int, int],
        own_limit: bool,
        refusal: str,
    ) -> str | tuple[Lowered, int]:
        """A step whose reservation did not fit, by its agent's ``on_budget``: the run's
        outcome (terminated, paused), or the lowered params and what they reserved (cap).

        ``amounts`` are the run's cost so far and what the step asked to reserve. A run's
        own ``max_cost_usd`` cannot be raised, so a pause never waits on it; a refusal the
        tenant's month explains better than the agent's budget names the tenant's cap."""
        cost, asked = amounts
        with self._uow(read_only=True) as uow:
            mode, agent_left, month_left = uow.runs.budget_left(claim)
        if (
            not own_limit
            and month_left is not None
            and month_left < asked
            and month_left <= agent_left
        ):
            refusal = budgets.tenant_refusal(asked)
        if mode is OnBudget.PAUSE and not own_limit and self._pauses is not None:
            self._pauses.pause_at_boundary(
                run,
                claim,
                PauseReason.BUDGET_WARNING,
                message=f"{refusal} (on_budget pause: raise the budget, then resume)",
                violations=("BUDGET_EXCEEDED",),
            )
            return "paused"
        if mode is not OnBudget.CAP:
            return self._fail(run, claim, RunStatus.FAILED_POLICY, "budget_exceeded", refusal)
        for _ in range(CAP_TRIES):
            left = agent_left if month_left is None else min(agent_left, month_left)
            if run.budget.max_cost_micros is not None:
                left = min(left, run.budget.max_cost_micros - cost)
            share = budgets.per_call_share(left, step.retries)
            lowered = self._skills.lower(step.skill, params, share)
            if lowered is None or lowered.max_tokens < self._cap_min_tokens:
                tokens = None if lowered is None else lowered.max_tokens
                message = budgets.cap_refusal(refusal, tokens, self._cap_min_tokens)
                return self._fail(run, claim, RunStatus.FAILED_POLICY, "budget_exceeded", message)
            reserved = self._worst_case(step, lowered.params)
            # Reserved by the same conditional UPDATE: what was read is only a guess.
            if reserved <= left and self._reserve(claim, reserved):
                return lowered, reserved
            with self._uow(read_only=True) as uow:
                mode, agent_left, month_left = uow.runs.budget_left(claim)
        message = f"{refusal}; concurrent runs kept taking what was left (on_budget cap)"
        return self._fail(run, claim, RunStatus.FAILED_POLICY, "budget_exceeded", message)

    def _check(
        self,
        holder: tuple[Run, Claim],
        step: NextStep,
        spent: tuple[Usage, int],
        watch: RunWatch,
        asked: tuple[Requests, Execution],
        amounts: tuple[int, int, int],
    ) -> tuple[PolicyCheckResult, int, bool]:
        """The check before ``step``; returns it, the run's escrow and whether a slice
        was tried. Before the first step of this execution the check's re-read and the
        run's first slice share one transaction (on SQLite every write transaction takes
        the one lock), which rolls back unless the check lets the step go and the slice
        fits."""
        (run, claim), (usage, cost), (requests, execution) = holder, spent, asked
        held, need, want = amounts
        joint = (
            watch.read_at_ms is None
            and self._checker.enabled
            and held < need < want
            and not (requests.pause or execution.release_requested)
            and budgets.run_refusal(run.budget.max_cost_micros, cost, need) is None
        )
        if not joint:
            check = self._checker.check_before_step(
                run, step, usage, cost_micros=cost, watch=watch, requests=requests
            )
            return check, held, False
        with self._uow() as uow:
            check = self._checker.check_before_step(
                run, step, usage, cost_micros=cost, watch=watch, requests=requests, uow=uow
            )
            if check.decision in (CheckDecision.TERMINATE, CheckDecision.PAUSE):
                return check, held, False
            slack = want * budgets.ESCROW_HEADROOM
            if self._reserve(claim, want - held, slack=slack, uow=uow):
                uow.commit()
                return check, want, True
        return check, held, True

    def _hold(self, claim: Claim, held: int, need: int, want: int) -> tuple[int, bool]:
        """Make the run's escrow cover ``need``: without I/O when it does, else by taking
        ``want`` (a slice for the steps left) while the budgets have room for
        ``budgets.ESCROW_HEADROOM`` more such slices (near the end of a budget runs reserve
        step by step, so what slices hold unused cannot starve concurrent runs), else just
        ``need``. Returns the escrow and whether it covers the step."""
        if held >= need:
            return held, True
        if want > need and self._reserve(claim, want - held, slack=want * budgets.ESCROW_HEADROOM):
            return want, True
        if self._reserve(claim, need - held):
            return need, True
        return held, False

    def _reserve(
        self, claim: Claim, micros: int, *, slack: int = 0, uow: UnitOfWork | None = None
    ) -> bool:
        """Hold ``micros`` of the agent's budget in a transaction of its own (or in ``uow``,
        which the caller commits if this fits), so no row lock is held while the step
        runs; a step that may cost nothing touches no agent row."""
        if micros == 0:
            return True
        month = budgets.month_of(self._clock.now_ms())
        if uow is not None:
            return uow.runs.reserve(claim, micros, month=month, slack=slack)
        with self._uow() as uow:
            fits = uow.runs.reserve(claim, micros, month=month, slack=slack)
            if fits:
                uow.commit()
        return fits

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
        rendered: tuple[Any, str | None],
        execution: Execution,
    ) -> StepRecord:
        started = time.perf_counter()
        usage, cost, tries = Usage(), 0, 0
        # Rendered once (before the reservation, which prices it): the same outputs give
        # the same input, so a refused input fails the step without a call and retries.
        params, refused = rendered
        result = SkillResult(error=refused)
        for try_number in range(1, step.retries + 2):
            if refused is not None:
                break
            tries = try_number
            context = SkillContext(run.id, run.tenant_id, step.step_id, claim.attempt, try_number)
            result = self._skills.invoke(step.skill, params, context)
            usage, cost = usage + result.usage, cost + result.cost_micros
            if result.ok or try_number > step.retries or execution.lost:
                break
            self._clock.sleep(self._retry.delay(try_number))
        output, output_refused = (None, None)
        if result.output is not None:
            output, output_refused = bounded(result.output, "output", self._limits.output)
        error = result.error if result.error is not None else output_refused
        return StepRecord(
            run_id=run.id,
            step_index=index,
            step_id=step.step_id,
            skill=step.skill,
            status="succeeded" if error is None else "failed",
            input=params,
            output=output,
            usage=usage,
            cost_micros=cost,
            duration_ms=int((time.perf_counter() - started) * 1000),
            error=None if error is None else printable(error, max_chars=MAX_ERROR_CHARS),
            attempt=claim.attempt,
            tries=tries,
            finished_at_ms=self._clock.now_ms(),
        )

    def _input(self, step: Step, outputs: dict[str, Any]) -> tuple[Any, str | None]:
        """The step's rendered params, or what to store instead and why it cannot run."""
        limit = self._limits.input
        try:
            params = render(step.params, outputs, max_chars=limit.max_bytes)
        except RenderTooLarge:
            reason = too_large("input", limit)
            return omitted(reason), reason
        except TemplateError as exc:
            return None, str(exc)
        return bounded(params, "input", limit)

    def _succeed(self, run: Run, claim: Claim, plan: Plan) -> str:
        output, refused = bounded(run_output(plan, run.steps), "run output", self._limits.output)
        if refused is not None:
            return self._fail(
                run, claim, RunStatus.FAILED, "unstorable_output", refused, output=output
            )
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
        return self._finish(run, claim, Finish(chain, output=output))

    def _fail(
        self,
        run: Run,
        claim: Claim,
        status: RunStatus,
        code: str,
        message: str,
        *,
        output: Any = None,
        check: PolicyCheckResult | None = None,
    ) -> str:
        chain = path(
            (run.phase, RunStatus.RUNNING),
            (Phase.FAILED, status, message),
            at_ms=self._clock.now_ms(),
        )
        finish = Finish(
            chain, output=output, error_code=code, error_message=message, policy_check=check
        )
        return self._finish(run, claim, finish)

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


def _aborts(plan: Plan, index: int) -> bool:
    return index < len(plan.steps) and plan.steps[index].on_error is OnError.ABORT


def _failure(record: StepRecord) -> str:
    return f"step {record.step_id!r} ({record.skill}) failed: {record.error}"


def _readable(records: Iterable[StepRecord]) -> Iterable[tuple[str, Any]]:
    """What later templates may read: every succeeded step's output, and the output of a
    failed step that has one (an HTTP error's status and body)."""
    for r in records:
        if r.status == "succeeded" or r.output is not None:
            yield r.step_id, r.output


def run_output(plan: Plan, steps: Iterable[StepRecord]) -> Any:
    """Outputs of succeeded steps with an ``output_key``, by key; else the last succeeded
    step's output. A failed step's output stays on the step: it is not a result."""
    outputs = {r.step_id: r.output for r in steps if r.status == "succeeded"}
    keyed = {s.output_key: outputs.get(s.step_id) for s in plan.steps if s.output_key}
    if keyed:
        return keyed
    for step in reversed(plan.steps):
        if step.step_id in outputs:
            return outputs[step.step_id]
    return None
