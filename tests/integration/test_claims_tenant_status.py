"""A claim never starts a run of a suspended tenant: its queued runs stay queued, other
tenants' runs are claimed and run as ever, and reactivating the tenant lets its runs run.
The status is set in SQL here, so that the claim is tested apart from the operator's
suspend (tests/integration/test_tenant_suspension.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.entrypoints.worker import WorkerPool
from support.skills import build_registry, log_plan, read_calls
from support.workers import assert_lifecycle_invariants, rows, wait_until

LEASE_MS = 5_000


def _set_status(kernel: Kernel, tenant_id: str, status: str) -> None:
    with kernel.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE tenants SET status = :s WHERE id = :id"), {"s": status, "id": tenant_id}
        )


def _phases(kernel: Kernel, run_ids: list[str]) -> set[tuple[str, str]]:
    return {(r.phase, r.status) for r in rows(kernel, "SELECT * FROM runs") if r.id in run_ids}


def test_runs_of_a_suspended_tenant_wait_queued_until_it_is_reactivated(
    database_url: str, tmp_path: Path
) -> None:
    log_dir = tmp_path / "calls"
    kernel = build_kernel(make_settings(database_url), skills=build_registry(log_dir))
    kernel.migrate()
    try:
        suspended, other = make_tenant(kernel), make_tenant(kernel)

        def submit(t: TenantContext, n: int) -> list[str]:
            submit_one = kernel.runs.submit
            return [
                submit_one(t.principal, agent_id=t.agent.id, plan=log_plan(2)).run.id
                for _ in range(n)
            ]

        # The suspended tenant's runs come first in claim order, so a claim that did not
        # skip them would take them before the other tenant's.
        waiting = submit(suspended, 3)
        _set_status(kernel, suspended.principal.tenant_id, "suspended")
        served = submit(other, 3)

        # The claim query itself skips them (left uncommitted: rolled back on exit).
        with kernel.uow() as uow:
            claimed = uow.runs.claim("probe", 10, kernel.clock.now_ms(), LEASE_MS)
        assert sorted(r.id for r in claimed) == sorted(served)

        pool = WorkerPool(kernel, concurrency=2).start()
        try:
            wait_until(
                lambda: _phases(kernel, served) == {("COMPLETED", "succeeded")},
                timeout=20,
                what="the active tenant's runs completed",
            )
            with kernel.uow() as uow:
                assert uow.runs.claim("probe", 10, kernel.clock.now_ms(), LEASE_MS) == []
            assert _phases(kernel, waiting) == {("AUTHORIZED", "queued")}
            in_waiting = ",".join(f"'{r}'" for r in waiting)
            assert rows(kernel, f"SELECT * FROM run_claims WHERE run_id IN ({in_waiting})") == []
            assert {c.run_id for c in read_calls(log_dir)} == set(served)

            _set_status(kernel, suspended.principal.tenant_id, "active")
            kernel.wakeup.notify()
            wait_until(
                lambda: _phases(kernel, waiting) == {("COMPLETED", "succeeded")},
                timeout=20,
                what="the reactivated tenant's runs completed",
            )
        finally:
            pool.stop(drain_timeout_s=5)
        assert {c.run_id for c in read_calls(log_dir)} == set(served) | set(waiting)
        assert_lifecycle_invariants(kernel)
    finally:
        kernel.close()
