"""The composition root: builds every real adapter and service from :class:`Settings`.

Nothing connects at import time; :func:`build_kernel` is the one place that does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from runkernel.adapters.audit_store import build_audit_store
from runkernel.adapters.bus.memory import InProcessBus
from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.adapters.db.listener import PostgresListener
from runkernel.adapters.db.unit_of_work import SqlUnitOfWork
from runkernel.adapters.skills import SkillRegistry, build_default_registry
from runkernel.adapters.telemetry.metrics import PrometheusMetrics
from runkernel.adapters.telemetry.redaction import install_log_redaction
from runkernel.adapters.trace_sinks import build_trace_sink
from runkernel.config import DEV_SECRET, Mode, Settings
from runkernel.domain.money import usd_to_micros
from runkernel.domain.storable import SizeLimit
from runkernel.errors import ConfigurationError
from runkernel.services.ack_forwarder import AckForwarder
from runkernel.services.completion import RunCompletionTransaction
from runkernel.services.executor import RetryPolicy, RunExecutor, StepLimits
from runkernel.services.governance import GovernanceRegistry, default_facade
from runkernel.services.midrun import MidExecutionPolicyChecker
from runkernel.services.operators import Operators
from runkernel.services.pauses import PauseManager
from runkernel.services.ports import AuditStore, Clock, SystemClock, TraceSink
from runkernel.services.reconciler import AuditReconciler
from runkernel.services.relay import Relay
from runkernel.services.runs import ExpectationPolicy, Limits, RunService
from runkernel.services.tenancy import Tenancy

if TYPE_CHECKING:
    from redis import Redis
from runkernel.services.wakeup import LocalWakeup


@dataclass
class Kernel:
    settings: Settings
    db: Database
    skills: SkillRegistry
    clock: Clock
    wakeup: LocalWakeup
    tenancy: Tenancy
    operators: Operators
    runs: RunService
    executor: RunExecutor
    audit: AuditStore
    trace_sink: TraceSink
    governance: GovernanceRegistry
    completion: RunCompletionTransaction
    relay_wakeup: LocalWakeup
    bus: InProcessBus
    relay: Relay[SqlUnitOfWork]
    reconciler: AuditReconciler
    metrics: PrometheusMetrics
    pauses: PauseManager
    checker: MidExecutionPolicyChecker
    # Set for a non-SQL audit store (Redis, memory): forwards the acks its completions
    # handed off in their transactions (DESIGN invariant 9). None with the SQL store.
    ack_forwarder: AckForwarder | None = None
    _listener: PostgresListener | None = field(default=None, repr=False)

    def uow(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, read_only=read_only)

    def migrate(self) -> None:
        migrate.upgrade(self.db)

    def listen(self) -> None:
        """Start turning PostgreSQL notifications into local wake-ups (no-op on SQLite)."""
        if self.db.is_sqlite or self._listener is not None:
            return
        self._listener = PostgresListener(self.settings.database_url, self.wakeup)
        self._listener.start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.skills.close()
        self.db.dispose()


def check_settings(settings: Settings) -> None:
    """Refuse combinations that would run but be unsafe."""
    if settings.mode is Mode.PROD and settings.webhook_secret.get_secret_value() == DEV_SECRET:
        raise ConfigurationError(
            "RUNKERNEL_WEBHOOK_SECRET is the development default; set a real secret in prod"
        )


def build_kernel(
    settings: Settings | None = None,
    *,
    skills: SkillRegistry | None = None,
    clock: Clock | None = None,
    trace_sink: TraceSink | None = None,
    redis_client: Redis | None = None,
) -> Kernel:
    settings = settings or Settings()
    check_settings(settings)
    # Before anything can log a URL: whatever configures logging later, records are redacted.
    install_log_redaction()
    db = open_database(settings.database_url, pool_size=settings.worker_concurrency + 4)
    skills = skills or build_default_registry(settings)
    clock = clock or SystemClock()
    wakeup = LocalWakeup()

    def uow(*, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(db, read_only=read_only)

    limits = Limits(settings.max_plan_steps, settings.max_payload_bytes)
    audit_store = build_audit_store(settings, db, redis_client)
    acks_in_tx = settings.audit_store == "sql"
    trace_sink = trace_sink or build_trace_sink(
        settings.trace_sink,
        url=settings.trace_sink_url,
        client=httpx.Client(timeout=10.0) if settings.trace_sink == "http" else None,
    )
    governance = GovernanceRegistry()
    governance.wire(default_facade())
    relay_wakeup = LocalWakeup()
    ack_forwarder = None if acks_in_tx else AckForwarder(uow, audit_store, clock)
    completion = RunCompletionTransaction(
        uow,
        governance,
        audit_store,
        trace_sink,
        clock,
        mode=settings.observability_mode,
        acks_in_transaction=acks_in_tx,
        relay_wakeup=relay_wakeup,
        ack_forwarder=ack_forwarder,
    )
    checker = MidExecutionPolicyChecker(
        uow,
        clock,
        interval_s=settings.policy_check_interval_s,
        min_steps=settings.policy_check_min_steps,
        enabled=settings.mid_run_checks,
    )
    pauses = PauseManager(
        uow,
        clock,
        completion,
        sla_s=settings.pause_sla_s,
        notify_before_s=settings.pause_notify_before_s,
        wakeup=wakeup,
    )
    executor = RunExecutor(
        uow,
        skills,
        clock,
        max_attempts=settings.max_attempts,
        retry=RetryPolicy(settings.retry_backoff_s, settings.retry_backoff_max_s),
        limits=StepLimits(
            input=SizeLimit(settings.max_step_input_bytes, "RUNKERNEL_MAX_STEP_INPUT_BYTES"),
            output=SizeLimit(settings.max_step_output_bytes, "RUNKERNEL_MAX_STEP_OUTPUT_BYTES"),
        ),
        completion=completion,
        completion_retries=settings.completion_retries,
        default_step_cost_micros=usd_to_micros(settings.default_step_cost_usd),
        cap_min_tokens=settings.budget_cap_min_tokens,
        pauses=pauses,
        checker=checker,
    )
    bus = InProcessBus()
    relay = Relay(
        uow,
        lambda unit: unit.outbox,
        bus,
        clock,
        relay_id=f"relay-{os.getpid()}-{os.urandom(3).hex()}",
        lease_ms=int(settings.lease_s * 1000),
    )
    metrics = PrometheusMetrics()
    reconciler = AuditReconciler(
        uow,
        audit_store,
        clock,
        metrics,
        store_in_database=acks_in_tx,
        relay_wakeup=relay_wakeup,
    )
    expectations = ExpectationPolicy(
        audit_store,
        in_transaction=acks_in_tx,
        run_timeout_s=settings.run_timeout_s,
        grace_period_ms=settings.grace_period_ms,
    )
    return Kernel(
        settings=settings,
        db=db,
        skills=skills,
        clock=clock,
        wakeup=wakeup,
        tenancy=Tenancy(
            uow, clock, default_max_concurrent_runs=settings.default_max_concurrent_runs
        ),
        operators=Operators(uow, clock),
        runs=RunService(uow, skills, clock, wakeup, limits, expectations, completion),
        executor=executor,
        audit=audit_store,
        trace_sink=trace_sink,
        governance=governance,
        completion=completion,
        relay_wakeup=relay_wakeup,
        bus=bus,
        relay=relay,
        reconciler=reconciler,
        metrics=metrics,
        pauses=pauses,
        checker=checker,
        ack_forwarder=ack_forwarder,
    )
