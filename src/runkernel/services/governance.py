"""The governance facades: the one entry point into each domain (incidents, policies,
traces, lessons), each acting inside the caller's unit of work and reporting what it did
as an audit ack (DESIGN: "facade").

``RunGovernanceFacade`` composes them. It is wired once in the composition root; asking
for it before that raises (DESIGN invariant 4: no silent no-op). A facade that cannot do
its job raises; it never returns None quietly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runkernel.domain import audit, events
from runkernel.domain.audit import DomainAck
from runkernel.domain.events import Event, new_event
from runkernel.domain.ids import new_id
from runkernel.domain.incidents import Incident, decide_incident
from runkernel.domain.lessons import derive_lessons
from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.policy import evaluate
from runkernel.domain.risk import RiskLevel, risk_level
from runkernel.domain.runs import RunStatus
from runkernel.domain.traces import TraceStatus
from runkernel.errors import ConfigurationError, InvariantError
from runkernel.services.ports import UnitOfWork

FaultHook = Callable[[str], None]
"""Called with "incident", "policy", "trace" and "commit" as completion passes each point;
tests make it raise to prove a failure anywhere leaves nothing behind."""


@dataclass
class Journal:
    """What one completion did: acks to record and events to publish, in order."""

    tenant_id: str
    run_id: str
    now_ms: int
    acks: list[DomainAck] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def ack(self, domain: str, action: str, result_id: str | None, **metadata: Any) -> None:
        self.acks.append(
            audit.create_domain_ack(
                self.run_id,
                domain,
                action,
                result_id=result_id,
                tenant_id=self.tenant_id,
                now_ms=self.now_ms,
                metadata=metadata or None,
            )
        )

    def event(self, topic: str, **payload: Any) -> None:
        self.events.append(
            new_event(
                topic,
                tenant_id=self.tenant_id,
                run_id=self.run_id,
                payload=payload,
                now_ms=self.now_ms,
            )
        )


class IncidentFacade:
    def decide(self, uow: UnitOfWork, outcome: RunOutcome, journal: Journal) -> Incident | None:
        """One decision per run: an incident when one is due, a recorded "none" otherwise."""
        incident = decide_incident(outcome, now_ms=journal.now_ms, new_id=new_id)
        if incident is None:
            journal.ack("incidents", "create_incident", None, decision="none_needed")
            return None
        if not uow.incidents.add(incident):
            # The database already holds this run's incident of that category: the same
            # cause never gets two incidents, and the existing one is what we report.
            incident = next(
                i for i in uow.incidents.for_run(outcome.run_id) if i.category == incident.category
            )
        journal.ack("incidents", "create_incident", incident.id, category=incident.category.value)
        journal.event(events.INCIDENT_CREATED, incident=incident.to_dict())
        journal.results["incident_id"] = incident.id
        return incident


class PolicyFacade:
    def evaluate(self, uow: UnitOfWork, outcome: RunOutcome, journal: Journal) -> str:
        rules = uow.policies.active_rules(outcome.tenant_id)
        evaluation = evaluate(rules, outcome)
        evaluation_id = new_id("eval")
        if not uow.policies.add_evaluation(
            evaluation_id=evaluation_id,
            tenant_id=outcome.tenant_id,
            run_id=outcome.run_id,
            evaluation=evaluation.to_dict(),
            now_ms=journal.now_ms,
        ):
            raise InvariantError(
                f"run {outcome.run_id} already has its evaluation: a run is finalized once"
            )
        journal.ack("policies", "evaluate_policy", evaluation_id, outcome=evaluation.outcome.value)
        journal.event(events.POLICY_EVALUATED, evaluation=evaluation.to_dict())
        journal.results["evaluation"] = evaluation.outcome.value
        return evaluation.outcome.value


class TraceFacade:
    def start(self, uow: UnitOfWork, journal: Journal) -> bool:
        """Open the run's trace once; a reclaimed run's later attempts add nothing."""
        if not uow.traces.start(
            run_id=journal.run_id, tenant_id=journal.tenant_id, now_ms=journal.now_ms
        ):
            return False
        journal.ack("logs", "start_trace", journal.run_id)
        journal.event(events.TRACE_STARTED)
        return True

    def complete(
        self, uow: UnitOfWork, status: TraceStatus, sink_error: str | None, journal: Journal
    ) -> None:
        if not uow.traces.complete(
            journal.run_id, status=status.value, sink_error=sink_error, now_ms=journal.now_ms
        ):
            # Never started (denied at T0, cancelled while queued): open and close it here
            # so every run still has exactly one trace, and ack the start it expected.
            if uow.traces.start(
                run_id=journal.run_id, tenant_id=journal.tenant_id, now_ms=journal.now_ms
            ):
                journal.ack("logs", "start_trace", journal.run_id)
            uow.traces.complete(
                journal.run_id, status=status.value, sink_error=sink_error, now_ms=journal.now_ms
            )
        journal.ack("logs", "complete_trace", journal.run_id, status=status.value)
        journal.event(events.TRACE_COMPLETED, status=status.value, sink_error=sink_error)


class LessonFacade:
    def derive(self, uow: UnitOfWork, outcome: RunOutcome, journal: Journal) -> list[str]:
        kept = [
            lesson.id
            for lesson in derive_lessons(outcome, now_ms=journal.now_ms, new_id=new_id)
            if uow.lessons.add(lesson)
        ]
        journal.results["lessons"] = kept
        return kept


@dataclass(frozen=True)
class RunGovernanceFacade:
    incidents: IncidentFacade
    policies: PolicyFacade
    traces: TraceFacade
    lessons: LessonFacade

    def record_final(
        self,
        uow: UnitOfWork,
        outcome: RunOutcome,
        journal: Journal,
        *,
        trace_status: TraceStatus,
        sink_error: str | None,
        fault: FaultHook | None = None,
    ) -> RiskLevel:
        """Everything a final run owes, in the caller's transaction: the incident decision,
        the policy evaluation, the trace completion, lessons, risk and the finalize ack."""
        check = fault or _no_fault
        self.incidents.decide(uow, outcome, journal)
        check("incident")
        self.policies.evaluate(uow, outcome, journal)
        check("policy")
        self.traces.complete(uow, trace_status, sink_error, journal)
        check("trace")
        self.lessons.derive(uow, outcome, journal)
        # threshold.exceeded is not decided here: it is news when a step crosses a budget's
        # threshold (``domain.thresholds``, written with the step), not at the end.
        risk = risk_level(outcome)
        journal.results["risk_level"] = risk.value
        journal.ack("orchestrator", "finalize_run", journal.run_id, status=outcome.status.value)
        journal.event(
            verdict_topic(outcome.status),
            status=outcome.status.value,
            error_code=outcome.error_code,
        )
        return risk


def verdict_topic(status: RunStatus) -> str:
    """The one event that says how a run ended: completed, cancelled (queued or stopped at
    a step boundary, whoever asked) or failed. Every final run goes through
    ``record_final`` exactly once (its evaluation is unique), so each is sent once."""
    if status is RunStatus.SUCCEEDED:
        return events.RUN_COMPLETED
    if status is RunStatus.CANCELLED:
        return events.RUN_CANCELLED
    return events.RUN_FAILED


def _no_fault(_point: str) -> None:
    return None


class GovernanceRegistry:
    """Holds the facade wired at startup; asking before wiring raises (invariant 4)."""

    def __init__(self) -> None:
        self._facade: RunGovernanceFacade | None = None

    def wire(self, facade: RunGovernanceFacade) -> None:
        self._facade = facade

    @property
    def facade(self) -> RunGovernanceFacade:
        if self._facade is None:
            raise ConfigurationError(
                "the governance facade is not wired: build the kernel with bootstrap.build_kernel"
            )
        return self._facade


def default_facade() -> RunGovernanceFacade:
    return RunGovernanceFacade(IncidentFacade(), PolicyFacade(), TraceFacade(), LessonFacade())
