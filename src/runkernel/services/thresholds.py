"""``threshold.exceeded``, written with the step that crossed a budget's threshold.

Called by the executor inside the transaction that records a step, so the event exists
exactly when the step does (DESIGN invariant 2), and a run whose worker dies after that
commit is not told again by the worker that takes it over: the budgets already told are
stored on the run (``runs.thresholds_crossed``), fenced like every worker write.
"""

from __future__ import annotations

from runkernel.domain import events, thresholds
from runkernel.domain.events import new_event
from runkernel.domain.records import Claim, Run, StepRecord, StepRecorded
from runkernel.services.ports import UnitOfWork


def tell_crossings(
    uow: UnitOfWork, run: Run, claim: Claim, step: StepRecord, recorded: StepRecorded
) -> list[thresholds.Crossing]:
    """Add a threshold.exceeded event for every budget ``step`` took past its threshold;
    ``run`` is the run as it was before the step. Returns the crossings."""
    agent = None
    if recorded.agent_held_micros is not None and recorded.agent_budget_micros is not None:
        agent = thresholds.AgentHeld(recorded.agent_held_micros, recorded.agent_budget_micros)
    agent_before, agent_after = thresholds.agent_uses(agent, step.cost_micros)
    before = thresholds.run_uses(run.budget, run.cost_micros, run.usage, step.step_index)
    after = thresholds.run_uses(
        run.budget,
        run.cost_micros + step.cost_micros,
        run.usage + step.usage,
        step.step_index + 1,
    )
    crossed = thresholds.crossings(
        [*before, *agent_before], [*after, *agent_after], already=recorded.thresholds_crossed
    )
    if not crossed:
        return []
    uow.runs.mark_thresholds(claim, recorded.thresholds_crossed | {c.budget for c in crossed})
    uow.outbox.add(
        [
            new_event(
                events.THRESHOLD_EXCEEDED,
                tenant_id=run.tenant_id,
                run_id=run.id,
                payload=c.payload(run.id, agent_id=run.agent_id),
                now_ms=step.finished_at_ms,
            )
            for c in crossed
        ]
    )
    return crossed
