"""The README's scale-out, followed literally on PostgreSQL: ``runkernel db upgrade``, one
``runkernel api`` and two ``runkernel worker`` processes, no ``serve``. Runs submitted over
HTTP succeed, every outbox event is published, the audit sweep reconciles (a run past its
deadline gets a stored result; one still running past it is flagged STALE), and one worker
at a time holds each job's lease — the other takes over when the holder stops."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from conftest import ECHO_PLAN
from e2e.processes import Process, create_tenant, free_port, kernel_env, runkernel, wait_healthy
from runkernel.adapters.db.engine import normalize_url
from runkernel.entrypoints import leases
from runkernel.entrypoints.cli.demo_receiver import LocalReceiver
from support.workers import wait_until

pytestmark = pytest.mark.postgres

RELAY_STARTED = re.compile(r"relay (relay-\S+) started")


@dataclass
class Deployment:
    url: str
    env: dict[str, str]
    tmp: Path
    api: Process
    workers: list[Process]
    db: Engine
    receiver: LocalReceiver


@pytest.fixture
def deployment(postgres_url: str, tmp_path: Path) -> Iterator[Deployment]:
    receiver = LocalReceiver("unused").start()
    env = kernel_env(postgres_url)
    env.update(
        RUNKERNEL_RUN_TIMEOUT_S="2",  # runs are past their deadline two seconds after submission
        RUNKERNEL_GRACE_PERIOD_MS="0",
        RUNKERNEL_RECONCILE_INTERVAL_S="0.2",
        RUNKERNEL_RELAY_INTERVAL_S="0.2",
        RUNKERNEL_EGRESS_ALLOW=receiver.authority,  # the slow run's endpoint, nothing else
    )
    runkernel("db", "upgrade", env=env)
    port = free_port()
    processes: list[Process] = []
    db = create_engine(normalize_url(postgres_url))
    try:
        api = Process("api", ["api", "--port", str(port), "--log-level", "warning"], env, tmp_path)
        processes.append(api)
        workers = [
            Process(f"worker-{i}", ["worker", "--concurrency", "4"], env, tmp_path) for i in (1, 2)
        ]
        processes.extend(workers)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, api)
        for worker in workers:
            worker.wait_for_output("started:")
        yield Deployment(url, env, tmp_path, api, workers, db, receiver)
    finally:
        for process in reversed(processes):
            process.stop()
        db.dispose()
        receiver.stop()


def rows(db: Engine, sql: str, **params: Any) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(text(sql), params))


def worker_id(worker: Process) -> str:
    found = re.search(r"worker (\S+) started:", worker.output)
    assert found, worker.output
    return found.group(1)


def holders_of(deployment: Deployment, name: str) -> list[Process]:
    """The workers whose log says they acquired the lease ``name``."""
    return [w for w in deployment.workers if f"acquired lease {name}" in w.output]


def submit(http: httpx.Client, agent_id: str, plan: dict[str, Any], **budget: Any) -> str:
    response = http.post("/api/v1/runs", json={"agent_id": agent_id, "plan": plan, **budget})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_succeeded(http: httpx.Client, run_ids: list[str]) -> None:
    def done() -> bool:
        statuses = [http.get(f"/api/v1/runs/{r}").json()["status"] for r in run_ids]
        assert "failed" not in statuses, statuses
        return all(s == "succeeded" for s in statuses)

    wait_until(done, timeout=60, what="every run to succeed")


def wait_all_published(db: Engine) -> list[Any]:
    def published() -> list[Any] | None:
        outbox = rows(db, "SELECT seq, claimed_by, published_at_ms FROM outbox ORDER BY seq")
        return outbox if outbox and all(r.published_at_ms is not None for r in outbox) else None

    outbox = wait_until(published, timeout=30, what="every outbox event to be published")
    assert outbox is not None
    return outbox


def wait_reconciled(db: Engine, run_ids: list[str]) -> dict[str, str]:
    def stored() -> dict[str, str] | None:
        found = {
            r.run_id: r.status for r in rows(db, "SELECT run_id, status FROM audit_reconciliations")
        }
        return found if set(run_ids) <= set(found) else None

    result = wait_until(stored, timeout=30, what="the sweep to reconcile every run")
    assert result is not None
    return result


def test_the_readme_scale_out_publishes_every_event_and_sweeps(deployment: Deployment) -> None:
    tenant = create_tenant("acme", deployment.env)
    headers = {"Authorization": f"Bearer {tenant['api_key']}"}
    with httpx.Client(base_url=deployment.url, headers=headers, timeout=10) as http:
        agent = http.post("/api/v1/agents", json={"name": "writer", "budget_usd": 50})
        assert agent.status_code == 201, agent.text
        agent_id = agent.json()["id"]

        # A run still in its step well after its deadline: the sweep must flag it STALE.
        slow_plan = {
            "steps": [
                {
                    "step_id": "wait",
                    "skill": "http.request",
                    "params": {"method": "GET", "url": f"{deployment.receiver.url}/slow?ms=5000"},
                }
            ]
        }
        slow = submit(http, agent_id, slow_plan, budget={"timeout_s": 1})
        runs = [submit(http, agent_id, ECHO_PLAN) for _ in range(6)]
        wait_succeeded(http, runs)

        def stale() -> bool:
            sql = "SELECT status FROM audit_reconciliations WHERE run_id = :run"
            found = rows(deployment.db, sql, run=slow)
            return bool(found) and found[0].status == "STALE"

        wait_until(stale, timeout=30, what="the sweep to flag the slow run STALE")
        assert http.get(f"/api/v1/runs/{slow}").json()["status"] == "running"

        # Every run past its deadline gets its stored result; every event leaves the outbox.
        reconciled = wait_reconciled(deployment.db, runs)
        assert {reconciled[r] for r in runs} == {"COMPLETE"}
        wait_succeeded(http, [slow])
        outbox = wait_all_published(deployment.db)
        topics = {r.topic for r in rows(deployment.db, "SELECT topic FROM outbox")}
        assert {"run.completed", "audit.reconciliation.stale"} <= topics

        # One worker held each lease, and only it relayed.
        relay_holders = holders_of(deployment, leases.RELAY)
        sweep_holders = holders_of(deployment, leases.SWEEP)
        assert len(relay_holders) == 1 and len(sweep_holders) == 1
        holder = relay_holders[0]
        relay_ids = set(RELAY_STARTED.findall(holder.output))
        assert {r.claimed_by for r in outbox} <= relay_ids and len(relay_ids) == 1
        lease_rows = {
            r.name: r.holder for r in rows(deployment.db, "SELECT name, holder FROM process_leases")
        }
        assert lease_rows == {
            leases.RELAY: worker_id(holder),
            leases.SWEEP: worker_id(sweep_holders[0]),
        }

        # The holder stops (SIGTERM): it releases its leases and the other worker takes
        # over the relay at once, publishing what comes next.
        assert holder.stop() == 0, holder.output
        standby = next(w for w in deployment.workers if w is not holder)
        wait_until(
            lambda: f"acquired lease {leases.RELAY}" in standby.output,
            timeout=30,
            what="the standby to take the relay's lease",
        )
        later = [submit(http, agent_id, ECHO_PLAN) for _ in range(2)]
        wait_succeeded(http, later)
        seen = {r.seq for r in outbox}
        outbox = wait_all_published(deployment.db)
        new_relays = {r.claimed_by for r in outbox if r.seq not in seen}
        assert new_relays and new_relays <= set(RELAY_STARTED.findall(standby.output))
        assert not new_relays & relay_ids
