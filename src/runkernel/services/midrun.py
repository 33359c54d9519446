"""``MidExecutionPolicyChecker``: the check before every step of a run (issue 7 point 3).

The run's own budget (cost, tokens, steps, wall time less its pauses) is checked at every
step with no I/O. What others may change while the run runs — the tenant's policy rules,
the run's stop flag, the tenant's status, the run's pauses (approvals, paused time) — is
re-read from the database before the first step this worker executes, then whenever
``interval_s`` has passed or ``min_steps`` steps were checked since the last read,
whichever comes first. Between re-reads the check costs a few comparisons; the cancel
flag that ``record_step`` hands back after every step stops the run at once in any case.

What the findings decide is ``domain.midrun.decide``; an error while checking (other than a
lost lease or unavailable storage, which stop the worker anyway) fails closed: PAUSE.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

from runkernel.domain import midrun, midrun_rules
from runkernel.domain.midrun import Finding, PolicyCheckResult, ViolationType
from runkernel.domain.outcomes import from_run
from runkernel.domain.pauses import paused_ms
from runkernel.domain.policy import PolicyRule
from runkernel.domain.records import Requests, Run, TenantStatus
from runkernel.domain.skills import Usage
from runkernel.errors import LeaseLostError, StorageUnavailableError
from runkernel.services.ports import Clock, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunWatch:
    """What one execution of a run last read; a new one (nothing read) forces a re-read."""

    read_at_ms: int | None = None
    steps_since_read: int = 0
    rules: tuple[PolicyRule, ...] = ()
    baseline_ms: int = 0
    paused_ms: int = 0
    accepted_ms: int = 0  # when the run's first step was judged on its plan
    approved: frozenset[int] = frozenset()
    cancel_requested: bool = False
    tenant_status: TenantStatus = TenantStatus.ACTIVE
    reads: int = field(default=0)  # how many re-reads (tests, the benchmark)


@dataclass(frozen=True, slots=True)
class NextStep:
    """The step about to run: its index, skill and rendered params."""

    index: int
    skill: str
    params: Any


class MidExecutionPolicyChecker:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        interval_s: float = 30.0,
        min_steps: int = 5,
        enabled: bool = True,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._interval_ms = int(interval_s * 1000)
        self._min_steps = min_steps
        self.enabled = enabled

    def check_before_step(
        self,
        run: Run,
        step: NextStep,
        usage: Usage,
        *,
        cost_micros: int,
        watch: RunWatch,
        requests: Requests = Requests(),
        uow: UnitOfWork | None = None,
    ) -> PolicyCheckResult:
        """Decide whether ``step`` of ``run`` may start. ``usage`` and ``cost_micros`` are
        the run's so far; ``requests`` what the last step record handed back."""
        now = self._clock.now_ms()
        if not self.enabled:
            if requests.cancel:  # a stop asked for is honoured with the checks off too
                return midrun.result(
                    [Finding(ViolationType.MANUAL_STOP, "cancelled on request")],
                    step_index=step.index,
                    checked_at_ms=now,
                    duration_ms=0.0,
                )
            return midrun.skipped(step_index=step.index, checked_at_ms=now)
        started = time.perf_counter()
        try:
            if self.due(watch, now):
                self.reread(run, watch, now, uow=uow)
            watch.steps_since_read += 1
            findings = self._findings(run, step, usage, cost_micros, watch, requests, now)
        except (LeaseLostError, StorageUnavailableError):
            raise
        except Exception as exc:  # fail closed: an unchecked step never runs
            log.exception("policy check of run %s failed; pausing it", run.id)
            return midrun.failed_closed(
                exc, step_index=step.index, checked_at_ms=now, duration_ms=_since(started)
            )
        return midrun.result(
            findings, step_index=step.index, checked_at_ms=now, duration_ms=_since(started)
        )

    def due(self, watch: RunWatch, now_ms: int) -> bool:
        """Whether the database must be read again before this check."""
        return (
            watch.read_at_ms is None
            or now_ms - watch.read_at_ms >= self._interval_ms
            or watch.steps_since_read >= self._min_steps
        )

    def reread(
        self, run: Run, watch: RunWatch, now_ms: int, *, uow: UnitOfWork | None = None
    ) -> None:
        """Read what others may have changed, in one read-only transaction.

        Before the first step of a run's first claim only the rules are read: the claim
        that just returned the run read its stop flag, started it only because its tenant
        was active, and a run never claimed before was never paused."""
        fresh = watch.read_at_ms is None and run.claim_epoch == 1
        with ExitStack() as stack:  # in the caller's transaction when it gives one
            uow = uow or stack.enter_context(self._uow(read_only=True))
            rules = uow.policies.rules(run.tenant_id, include_retired=True)
            stored: Run | None = run
            if fresh:
                tenant_status, pauses = TenantStatus.ACTIVE, []
            else:
                stored = uow.runs.get(run.tenant_id, run.id, details=False)
                tenant = uow.tenants.get(run.tenant_id)
                tenant_status = TenantStatus.ACTIVE if tenant is None else tenant.status
                pauses = uow.pauses.for_run(run.id)
        watch.rules = tuple(rules)
        started = run.started_at_ms if run.started_at_ms is not None else run.created_at_ms
        watch.baseline_ms = max(midrun_rules.baseline_ms(started, pauses), watch.accepted_ms)
        watch.paused_ms = paused_ms(pauses, now_ms)
        watch.approved = midrun_rules.approved_steps(pauses)
        watch.cancel_requested = stored is not None and stored.cancel_requested
        watch.tenant_status = tenant_status
        watch.read_at_ms, watch.steps_since_read = now_ms, 0
        watch.reads += 1

    def _findings(
        self,
        run: Run,
        step: NextStep,
        usage: Usage,
        cost_micros: int,
        watch: RunWatch,
        requests: Requests,
        now_ms: int,
    ) -> list[Finding]:
        found: list[Finding] = []
        if requests.cancel or watch.cancel_requested:
            found.append(Finding(ViolationType.MANUAL_STOP, "cancelled on request"))
        if watch.tenant_status is not TenantStatus.ACTIVE:
            found.append(
                Finding(ViolationType.TENANT_SUSPENDED, f"tenant {run.tenant_id} is suspended")
            )
        started_ms = run.started_at_ms if run.started_at_ms is not None else now_ms
        exceeded = midrun.budget_exceeded(
            run.budget,
            cost_micros,
            usage,
            step.index,
            midrun.active_ms(started_ms, now_ms, watch.paused_ms),
        )
        if exceeded is not None:
            found.append(Finding(ViolationType.BUDGET_EXCEEDED, exceeded))
        # Before its first step a run has done nothing a rule changed since its submission
        # could weigh on: its plan is judged as at submission. Once it started, every
        # change since its start (or its last resume) counts.
        if run.claim_epoch == 1 and step.index == 0:
            unstarted = replace(from_run(run), started_at_ms=None)
            found += midrun_rules.changed_rules(
                watch.rules, run.agent_id, run.created_at_ms, unstarted=unstarted
            )
            # The rules just read are the ones it starts under (this worker remembers;
            # one that takes the run over counts from the run's start).
            watch.accepted_ms = max(watch.accepted_ms, watch.read_at_ms or now_ms)
            watch.baseline_ms = max(watch.baseline_ms, watch.accepted_ms)
        else:
            found += midrun_rules.changed_rules(watch.rules, run.agent_id, watch.baseline_ms)
        found += midrun_rules.approval_findings(
            watch.rules,
            run.agent_id,
            step_index=step.index,
            skill=step.skill,
            params=step.params,
            approved=watch.approved,
        )
        return found


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
