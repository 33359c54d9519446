"""Prometheus metrics, in a registry per kernel (so several kernels in one process, as in
tests, never collide on names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from runkernel.domain.audit import ReconciliationResult


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciliations = Counter(
            "runkernel_reconciliations",
            "Runs reconciled by the audit sweep, by result status",
            ["status"],
            registry=self.registry,
        )
        self.missing = Counter(
            "runkernel_audit_missing",
            "Expected actions that were not acked, by domain and action",
            ["domain", "action"],
            registry=self.registry,
        )
        self.drift = Counter(
            "runkernel_audit_drift",
            "Acked actions nobody expected (e.g. a duplicate), by domain and action",
            ["domain", "action"],
            registry=self.registry,
        )
        self.stale = Counter(
            "runkernel_stale_runs", "Runs found stale by the audit sweep", registry=self.registry
        )
        self.duration = Histogram(
            "runkernel_reconciliation_duration_seconds",
            "Time to reconcile one run",
            registry=self.registry,
        )

    def reconciled(self, result: ReconciliationResult, duration_s: float) -> None:
        self.reconciliations.labels(result.status.value).inc()
        for domain, action in result.missing_actions:
            self.missing.labels(domain, action).inc()
        for domain, action in result.drift_actions:
            self.drift.labels(domain, action).inc()
        if result.stale_run:
            self.stale.inc()
        self.duration.observe(duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
