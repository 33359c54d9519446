"""Pausing and resuming runs, and what an expired pause does (``PauseManager``).

A running run pauses at its next step boundary: ``pause_run`` records the request (the
way a cancel is requested), and the worker's executor, at the boundary, calls
:meth:`PauseManager.pause_at_boundary` — one fenced transaction that stores the pause,
moves the run to EXECUTING/paused, ends its lease (so the worker's slot is free and no
takeover ever claims it) and writes ``run.paused`` to the outbox. A resume the domain
allows (``domain.pauses.decide_resume``) marks the run to be claimed again by any worker,
which continues after its last completed step without a new attempt; a refused one is
recorded on the pause with its reason. Everything lives in the database, so a restarted
process sees every pause and :meth:`check_timeouts` applies each expiry exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from runkernel.domain import events
from runkernel.domain import pauses as domain
from runkernel.domain.audit import DomainAck
from runkernel.domain.events import Event, new_event
from runkernel.domain.ids import new_id
from runkernel.domain.incidents import pause_escalated_incident
from runkernel.domain.midrun import PolicyCheckResult
from runkernel.domain.pauses import Pause, PauseReason, TimeoutBehaviour
from runkernel.domain.permissions import Permission, actor, require, resumer
from runkernel.domain.records import Claim, Principal, Run
from runkernel.domain.runs import PAUSE, Phase, RunStatus, is_terminal, transition
from runkernel.errors import ConflictError, NotFoundError, PermissionDeniedError
from runkernel.services.completion import RunCompletionTransaction
from runkernel.services.ports import Clock, UnitOfWork, UnitOfWorkFactory, WakeupSignal

log = logging.getLogger(__name__)

PAUSE_EXPIRED = "pause_expired"


class PauseManager:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        completion: RunCompletionTransaction,
        *,
        sla_s: float,
        notify_before_s: float = 0,
        wakeup: WakeupSignal | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._completion = completion
        self._sla_ms = int(sla_s * 1000)
        self._notify_before_ms = int(notify_before_s * 1000)
        self._wakeup = wakeup

    # -- pausing --------------------------------------------------------------------
    def pause_run(self, principal: Principal, run_id: str) -> Run:
        """A manual pause: the worker pauses the running run at its next step boundary.
        A queued run has no step boundary to stop at and holds no worker: 409."""
        require(principal, Permission.CANCEL_RUN)  # who may stop a run may halt it
        now = self._clock.now_ms()
        with self._uow() as uow:
            run = self._run(uow, principal.tenant_id, run_id)
            if run.status is not RunStatus.RUNNING or not uow.pauses.request_pause(
                run.tenant_id, run.id, now, by=actor(principal)
            ):
                raise ConflictError(
                    f"only a running run can be paused; this one is {run.status.value}",
                    code="run_not_running",
                )
            uow.commit()
        return self._get(principal.tenant_id, run_id)

    def pause_at_boundary(
        self,
        run: Run,
        claim: Claim,
        reason: PauseReason = PauseReason.MANUAL_PAUSE,
        *,
        message: str = "paused on request",
        paused_by: str = domain.SYSTEM_ACTOR,
        violations: tuple[str, ...] = (),
        on_timeout: TimeoutBehaviour = TimeoutBehaviour.TERMINATE,
        step_index: int | None = None,
        check: PolicyCheckResult | None = None,
    ) -> Pause:
        """Pause the run this worker holds, before step ``step_index``; fenced by the claim
        (``LeaseLostError`` if it was lost). ``check`` is the mid-run check that decided the
        pause, kept in the same transaction. The caller stops executing the run."""
        now = self._clock.now_ms()
        with self._uow() as uow:
            number = len(uow.pauses.for_run(run.id)) + 1
            pause = domain.open_pause(
                run.id,
                number,
                reason,
                message=message,
                paused_by=paused_by,
                now_ms=now,
                sla_ms=self._sla_ms,
                violations=violations,
                key_owner=run.submitted_key_id,
                on_timeout=on_timeout,
                step_index=step_index,
            )
            requested_by = uow.pauses.requested_by(run.id)
            if requested_by is not None:
                pause = replace(pause, paused_by=requested_by)
            moved = transition(
                *PAUSE[0],
                *PAUSE[1],
                at_ms=now,
                reason=f"paused ({reason.value}) by {pause.paused_by}: {message}",
            )
            uow.pauses.pause(claim, moved)
            uow.pauses.add(pause, run.tenant_id)
            if check is not None:
                uow.policy_checks.add(run.tenant_id, run.id, check)
            uow.outbox.add([_event(events.RUN_PAUSED, run.tenant_id, pause, now)])
            uow.commit()
        return pause

    # -- resuming -------------------------------------------------------------------
    def try_resume(self, principal: Principal, run_id: str, note: str | None = None) -> Run:
        """Resume as ``principal``: refused (403 not allowed, 409 not paused or expired)
        with the refusal recorded, or queued to continue on any worker."""
        require(principal, Permission.CANCEL_RUN)  # the pause's authorities decide the rest
        now = self._clock.now_ms()
        with self._uow() as uow:
            run = self._run(uow, principal.tenant_id, run_id)
            pause = uow.pauses.open_for(run.id)
            who = resumer(principal, run.submitted_key_id if pause is None else pause.key_owner)
            decision = domain.decide_resume(pause, who, now)
            if decision.pause is not None and decision.pause.resume_attempts:
                uow.pauses.save(decision.pause)
            if decision.allowed:
                self._queue_resumed(uow, run, decision.pause, note)
            uow.commit()
        if not decision.allowed:
            if decision.refusal is domain.ResumeRefusal.NOT_ALLOWED:
                raise PermissionDeniedError(decision.message)
            code = f"resume_refused_{decision.refusal.value if decision.refusal else ''}"
            raise ConflictError(decision.message, code=code)
        self._wake()
        return self._get(principal.tenant_id, run_id)

    def _queue_resumed(
        self, uow: UnitOfWork, run: Run, pause: Pause | None, note: str | None
    ) -> None:
        assert pause is not None  # an allowed resume always has its pause
        uow.pauses.request_resume(run.id, pause.ended_at_ms or self._clock.now_ms())
        payload_note = {"note": note} if note else {}
        uow.outbox.add(
            [_event(events.RUN_RESUMED, run.tenant_id, pause, pause.ended_at_ms, **payload_note)]
        )
        uow.runs.notify_new_runs()

    def reject(self, principal: Principal, run_id: str, note: str | None = None) -> Run:
        """End a paused run ``failed_policy`` instead of resuming it (``approval_rejected``
        for an approval, else ``rejected``), with incident, evaluation and trace in the
        same transaction; whoever may resume the pause may reject it (403 otherwise, the
        refusal recorded; 409 when the run is not paused)."""
        require(principal, Permission.CANCEL_RUN)  # the pause's authorities decide the rest
        now = self._clock.now_ms()
        acks: list[DomainAck] = []
        with self._uow() as uow:
            uow.runs.lock(run_id)
            run = self._run(uow, principal.tenant_id, run_id)
            pause = uow.pauses.open_for(run.id)
            who = resumer(principal, run.submitted_key_id if pause is None else pause.key_owner)
            decision = domain.decide_reject(pause, who, now)
            if decision.pause is not None and decision.pause.is_open:
                uow.pauses.save(decision.pause)  # the refusal
            if decision.allowed and decision.pause is not None:
                code = (
                    "approval_rejected"
                    if decision.pause.reason is PauseReason.APPROVAL_REQUIRED
                    else "rejected"
                )
                why = f"{decision.pause.reason.value} pause rejected by {who.actor}"
                message = f"{why}: {note}" if note else why
                acks = self._end(uow, run, decision.pause, now, message=message, code=code)
            uow.commit()
        if not decision.allowed:
            if decision.refusal is domain.ResumeRefusal.NOT_ALLOWED:
                raise PermissionDeniedError(decision.message)
            code = f"reject_refused_{decision.refusal.value if decision.refusal else ''}"
            raise ConflictError(decision.message, code=code)
        if acks:
            self._completion.acks_committed(acks)
        return self._get(principal.tenant_id, run_id)

    # -- expiry ---------------------------------------------------------------------
    def check_timeouts(self, *, limit: int = 100) -> int:
        """Send ``run.pause_expiring`` for pauses about to expire (:meth:`notify_expiring`),
        then apply the timeout behaviour of every expired pause; returns how many expired."""
        now = self._clock.now_ms()
        self.notify_expiring(now, limit=limit)
        with self._uow(read_only=True) as uow:
            expired = uow.pauses.expired(now, limit=limit)
        handled = 0
        for pause in expired:
            try:
                handled += self._time_out(pause.run_id, now)
            except Exception:  # one run's failure must not stop the others' timeouts
                log.exception("pause timeout of run %s failed", pause.run_id)
        return handled

    def notify_expiring(self, now: int, *, limit: int = 100) -> int:
        """One ``run.pause_expiring`` per pause expiry, ``notify_before_s`` ahead of it; the
        notice is stored on the pause with the event, so a restart neither repeats nor
        loses it. Returns how many were sent."""
        if self._notify_before_ms <= 0:
            return 0
        with self._uow(read_only=True) as uow:
            due = uow.pauses.expiring(now, self._notify_before_ms, limit=limit)
        sent = 0
        for candidate in due:
            try:
                sent += self._notify(candidate.run_id, now)
            except Exception:  # one run's failure must not keep the others' notices back
                log.exception("pause expiry notice of run %s failed", candidate.run_id)
        return sent

    def _notify(self, run_id: str, now: int) -> int:
        with self._uow() as uow:
            uow.runs.lock(run_id)  # one notice, whichever sweeper gets here first
            pause = uow.pauses.open_for(run_id)
            if pause is None or not domain.expiring_notice_due(pause, now, self._notify_before_ms):
                return 0  # resumed, expired or told meanwhile
            run = uow.runs.get_for_worker(run_id)
            if run is None:
                return 0
            uow.pauses.save(domain.expiring_notified(pause))
            event = _event(
                events.RUN_PAUSE_EXPIRING,
                run.tenant_id,
                pause,
                now,
                expires_in_ms=pause.expires_at_ms - now,
                on_timeout=pause.on_timeout.value,
            )
            uow.outbox.add([event])
            uow.commit()
        return 1

    def _time_out(self, run_id: str, now: int) -> int:
        acks: list[DomainAck] = []
        with self._uow() as uow:
            uow.runs.lock(run_id)
            pause = uow.pauses.open_for(run_id)
            action = None if pause is None else domain.timeout_action(pause, now)
            run = uow.runs.get_for_worker(run_id)
            if pause is None or action is None or run is None:
                return 0  # resumed or handled meanwhile
            if action is TimeoutBehaviour.CONTINUE:
                resumed = domain.close(pause, now, actor=domain.SYSTEM_ACTOR, outcome="resumed")
                uow.pauses.save(resumed)
                self._queue_resumed(uow, run, resumed, "pause expired: continued")
            elif action is TimeoutBehaviour.ESCALATE:
                uow.pauses.save(domain.escalate(pause, now, self._sla_ms))
                incident = pause_escalated_incident(
                    run.id, run.tenant_id, pause.reason.value, now_ms=now, new_id=new_id
                )
                if uow.incidents.add(incident):
                    uow.outbox.add(
                        [
                            new_event(
                                events.INCIDENT_CREATED,
                                tenant_id=run.tenant_id,
                                run_id=run.id,
                                payload=incident.to_dict(),
                                now_ms=now,
                            )
                        ]
                    )
            else:
                acks = self._terminate(uow, run, pause, now)
            uow.commit()
        if acks:
            self._completion.acks_committed(acks)
        if action is TimeoutBehaviour.CONTINUE:
            self._wake()
        return 1

    def _terminate(self, uow: UnitOfWork, run: Run, pause: Pause, now: int) -> list[DomainAck]:
        message = f"{pause.reason.value} pause expired unresumed at {pause.expires_at_ms} ms"
        closed = domain.close(pause, now, actor=domain.SYSTEM_ACTOR, outcome="terminated")
        return self._end(uow, run, closed, now, message=message, code=PAUSE_EXPIRED)

    def _end(
        self, uow: UnitOfWork, run: Run, closed: Pause, now: int, *, message: str, code: str
    ) -> list[DomainAck]:
        """End the paused run failed_policy without a worker, with its governance record
        (incident, evaluation, trace) in this transaction; ``closed`` is its pause, ended."""
        done = transition(
            run.phase, run.status, Phase.FAILED, RunStatus.FAILED_POLICY, at_ms=now, reason=message
        )
        if not uow.pauses.terminate(run.id, done, error_code=code):
            return []
        uow.pauses.save(closed)
        final = replace(
            run,
            phase=done.to_phase,
            status=done.to_status,
            error_code=code,
            error_message=message,
            finished_at_ms=now,
        )
        return self._completion.record_unclaimed(uow, final)

    # -- helpers --------------------------------------------------------------------
    def pauses(self, tenant_id: str, run_id: str) -> list[Pause]:
        """A run's pauses, oldest first (its tenant's only)."""
        with self._uow(read_only=True) as uow:
            if uow.runs.get(tenant_id, run_id, details=False) is None:
                raise NotFoundError(f"no run {run_id!r}")
            return uow.pauses.for_run(run_id)

    def _run(self, uow: UnitOfWork, tenant_id: str, run_id: str) -> Run:
        run = uow.runs.get(tenant_id, run_id, details=False)
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        if is_terminal(run.phase):
            raise ConflictError(f"run is already {run.status.value}", code="run_already_final")
        return run

    def _get(self, tenant_id: str, run_id: str) -> Run:
        with self._uow(read_only=True) as uow:
            run = uow.runs.get(tenant_id, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return run

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.notify()


def _event(topic: str, tenant_id: str, pause: Pause, now: int | None, **extra: object) -> Event:
    payload: dict[str, object] = {
        "reason": pause.reason.value,
        "message": pause.message,
        "number": pause.number,
        "expires_at_ms": pause.expires_at_ms,
        "actor": pause.ended_by if topic == events.RUN_RESUMED else pause.paused_by,
        **extra,
    }
    return new_event(
        topic, tenant_id=tenant_id, run_id=pause.run_id, payload=payload, now_ms=now or 0
    )
