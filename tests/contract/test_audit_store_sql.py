"""What only the SQL audit store promises: writes in the caller's transaction, and one
saved result per run however many sweepers race."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
from sqlalchemy import insert

import runkernel
from runkernel.adapters.audit_store import SqlAuditStore
from runkernel.adapters.db.engine import Database
from runkernel.adapters.db.tables import tenants
from runkernel.domain.audit import (
    ReconciliationResult,
    ReconciliationStatus,
    create_domain_ack,
    create_run_expectations,
)

REPOSITORY = Path(runkernel.__file__).parent / "adapters/audit_store/repository.py"


class Boom(Exception):
    pass


def _expectations(run_id: str) -> list:  # type: ignore[type-arg]
    return create_run_expectations(
        run_id, tenant_id="ten_x", run_timeout_ms=1_000, grace_period_ms=10, now_ms=5
    )


def test_expectations_commit_or_roll_back_with_the_callers_transaction(
    audit_db: Database,
) -> None:
    store = SqlAuditStore(audit_db)
    with pytest.raises(Boom), audit_db.engine.begin() as conn:
        conn.execute(insert(tenants).values(id="ten_x", name="x", created_at_ms=1))
        repo = SqlAuditStore.in_transaction(conn)
        repo.add_expectations(_expectations("run_lost"))
        repo.add_ack(create_domain_ack("run_lost", "logs", "start_trace", now_ms=6))
        assert len(repo.expectations("run_lost")) == 5  # visible inside the transaction
        raise Boom
    assert store.expectations("run_lost") == [] and store.acks("run_lost") == []

    with audit_db.engine.begin() as conn:
        SqlAuditStore.in_transaction(conn).add_expectations(_expectations("run_kept"))
    assert len(store.expectations("run_kept")) == 5


def test_of_racing_sweepers_exactly_one_saves(audit_db: Database) -> None:
    store = SqlAuditStore(audit_db)
    store.add_expectations(_expectations("run_r"))
    outcomes: list[bool] = []
    start = threading.Barrier(4)

    def sweep(n: int) -> None:
        result = ReconciliationResult(
            "run_r", ReconciliationStatus.STALE, (), (), (), True, (), 100 + n, 5, 0
        )
        start.wait()
        outcomes.append(store.save_reconciliation(result, "ten_x"))

    threads = [threading.Thread(target=sweep, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False, False, False, True]


def test_the_repository_never_owns_the_transaction() -> None:
    """DESIGN invariant 3, for this module (tests/unit/test_guards.py lists it too)."""
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(REPOSITORY.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"commit", "rollback", "begin", "begin_nested", "create_engine"}
    assert "execute" in calls  # the scan sees the module's calls at all
