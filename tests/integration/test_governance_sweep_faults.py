"""A sweep that fails half-way flags the run at a later sweep (issue 3: "opens a STALE_RUN
incident and writes an audit.reconciliation.* event — once per run"): storing the result
and flagging the run must succeed or fail together, with the SQL store and with Redis."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conftest import ECHO_PLAN, REDIS_URL, _unavailable, make_settings, make_tenant
from runkernel.adapters.audit_store.redis import RedisAuditStore
from runkernel.adapters.db.incidents import SqlIncidentRepository
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import ReconciliationStatus
from runkernel.domain.records import RunBudget
from runkernel.services.reconciler import AuditReconciler
from support.workers import rows, wait_until


@pytest.fixture
def skernel(database_url: str) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url, grace_period_ms=0))
    k.migrate()
    yield k
    k.close()


def _stranded_run(kernel: Kernel) -> str:
    """A run nobody executes, past its deadline 200 ms after submission."""
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(
        tenant.principal, agent_id=tenant.agent.id, plan=ECHO_PLAN, budget=RunBudget(timeout_s=0.2)
    ).run.id
    return run_id


def _fail_incidents_once(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    original = SqlIncidentRepository.add
    calls = {"n": 0}

    def add(self: SqlIncidentRepository, incident: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected: the database refused the incident")
        return original(self, incident)

    monkeypatch.setattr(SqlIncidentRepository, "add", add)
    return calls


def _sweep_flags_after_a_failed_sweep(
    kernel: Kernel, reconciler: AuditReconciler, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = max(e.deadline_ms or 0 for e in reconciler._store.expectations(run_id))
    wait_until(lambda: kernel.clock.now_ms() > deadline, timeout=10, what="deadline")
    calls = _fail_incidents_once(monkeypatch)
    assert reconciler.sweep() == []  # the failure is logged; the sweep goes on
    assert calls["n"] == 1
    assert rows(kernel, "SELECT id FROM incidents WHERE run_id = :r", r=run_id) == []
    results = reconciler.sweep()  # the next sweep must flag it
    assert [(r.run_id, r.status) for r in results] == [(run_id, ReconciliationStatus.STALE)]
    incidents = rows(kernel, "SELECT category FROM incidents WHERE run_id = :r", r=run_id)
    assert [r.category for r in incidents] == ["STALE_RUN"]
    topics = rows(kernel, "SELECT topic FROM outbox WHERE run_id = :r", r=run_id)
    assert [r.topic for r in topics] == ["audit.reconciliation.stale"]


def test_sql_store_a_failed_sweep_is_retried_by_the_next(
    skernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _stranded_run(skernel)
    _sweep_flags_after_a_failed_sweep(skernel, skernel.reconciler, run_id, monkeypatch)


@pytest.fixture
def isolated_redis_store() -> Iterator[RedisAuditStore]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", f"{REDIS_URL}: {exc}")
    prefix = f"rk_test_{secrets.token_hex(6)}"
    yield RedisAuditStore(client, prefix=prefix, ttl_s=60)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_store_a_failed_sweep_is_retried_by_the_next(
    skernel: Kernel, isolated_redis_store: RedisAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _stranded_run(skernel)
    # The run's expectations, moved to a Redis store of this test's own key prefix (the
    # kernel's SQL store keeps none), so the sweep sees nothing of anybody else's.
    store = isolated_redis_store
    store.add_expectations(skernel.audit.expectations(run_id))
    skernel.audit.clear_run(run_id)
    reconciler = AuditReconciler(
        skernel.uow, store, skernel.clock, skernel.metrics, store_in_database=False
    )
    _sweep_flags_after_a_failed_sweep(skernel, reconciler, run_id, monkeypatch)


def test_concurrent_sweepers_flag_each_stale_run_once(skernel: Kernel, database_url: str) -> None:
    """Three sweepers (kernels of their own, as in separate processes) sweep at once: each
    stale run gets one stored result, one STALE_RUN incident and one stale event."""
    run_ids = [_stranded_run(skernel) for _ in range(4)]
    deadline = max(e.deadline_ms or 0 for r in run_ids for e in skernel.audit.expectations(r))
    wait_until(lambda: skernel.clock.now_ms() > deadline, timeout=10, what="deadline")
    sweepers = [build_kernel(make_settings(database_url, grace_period_ms=0)) for _ in range(3)]
    start = threading.Barrier(len(sweepers))
    stored: list[list[str]] = [[] for _ in sweepers]

    def sweep(i: int) -> None:
        start.wait()
        stored[i] = [r.run_id for r in sweepers[i].reconciler.sweep()]

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(len(sweepers))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for k in sweepers:
            k.close()
    assert sorted(r for found in stored for r in found) == sorted(run_ids)
    incidents = rows(skernel, "SELECT run_id, category FROM incidents")
    assert sorted((r.run_id, r.category) for r in incidents) == sorted(
        (r, "STALE_RUN") for r in run_ids
    )
    topics = rows(skernel, "SELECT run_id, topic FROM outbox")
    assert sorted((r.run_id, r.topic) for r in topics) == sorted(
        (r, "audit.reconciliation.stale") for r in run_ids
    )
    assert skernel.reconciler.sweep() == []
