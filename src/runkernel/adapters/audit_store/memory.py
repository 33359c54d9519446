"""An audit store in this process's memory: the fake for unit tests and mode ``local``.

Thread-safe; lost when the process ends, which is why mode test/prod refuse it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from runkernel.domain.audit import (
    FINALIZE_RUN,
    AuditExpectation,
    DomainAck,
    ReconciliationResult,
    ReconciliationStatus,
    settle_expectations,
)


class MemoryAuditStore:
    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expectations: dict[str, list[AuditExpectation]] = {}
        self._acks: dict[str, list[DomainAck]] = {}
        self._ack_ids: set[str] = set()
        self._results: dict[str, tuple[ReconciliationResult, str | None]] = {}

    def add_expectations(self, expectations: Sequence[AuditExpectation]) -> None:
        with self._lock:
            for exp in expectations:
                self._expectations.setdefault(exp.run_id, []).append(exp)

    def add_ack(self, ack: DomainAck) -> None:
        with self._lock:
            if ack.id in self._ack_ids:  # idempotent: a forwarder may deliver an ack twice
                return
            self._ack_ids.add(ack.id)
            self._acks.setdefault(ack.run_id, []).append(ack)

    def expectations(self, run_id: str) -> list[AuditExpectation]:
        with self._lock:
            found = list(self._expectations.get(run_id, ()))
        return sorted(found, key=lambda e: (e.created_at_ms, e.id))

    def acks(self, run_id: str) -> list[DomainAck]:
        with self._lock:
            found = list(self._acks.get(run_id, ()))
        return sorted(found, key=lambda a: (a.created_at_ms, a.id))

    def get_pending_run_ids(self, now_ms: int, *, limit: int = 100) -> list[str]:
        with self._lock:
            due: list[tuple[int, str]] = []
            for run_id, expectations in self._expectations.items():
                if run_id in self._results:
                    continue
                deadlines = [
                    e.deadline_ms
                    for e in expectations
                    if e.key() == FINALIZE_RUN and e.deadline_ms is not None
                ]
                if deadlines and min(deadlines) < now_ms:
                    due.append((min(deadlines), run_id))
            return [run_id for _, run_id in sorted(due)[:limit]]

    def save_reconciliation(
        self, result: ReconciliationResult, tenant_id: str | None, *, replace: bool = False
    ) -> bool:
        with self._lock:
            if result.run_id in self._results and not replace:
                return False
            self._results[result.run_id] = (result, tenant_id)
            run_id = result.run_id
            if run_id in self._expectations:
                self._expectations[run_id] = settle_expectations(
                    self._expectations[run_id], self._acks.get(run_id, ())
                )
            return True

    def reconciliation(self, run_id: str) -> ReconciliationResult | None:
        with self._lock:
            stored = self._results.get(run_id)
            return stored[0] if stored else None

    def reconciliations(
        self,
        *,
        status: ReconciliationStatus | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
    ) -> list[ReconciliationResult]:
        with self._lock:
            found = [
                result
                for result, tenant in self._results.values()
                if (status is None or result.status is status)
                and (tenant_id is None or tenant == tenant_id)
            ]
        found.sort(key=lambda r: (r.reconciled_at_ms, r.run_id), reverse=True)
        return found[:limit]

    def clear_run(self, run_id: str) -> None:
        with self._lock:
            self._expectations.pop(run_id, None)
            self._ack_ids.difference_update(a.id for a in self._acks.pop(run_id, ()))
            self._results.pop(run_id, None)
