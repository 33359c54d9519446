"""Helpers of the governance API tests: an authenticated test client, runs driven to a
final state by a real worker pool, and a clock a test can move past a run's deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.testclient import TestClient

from runkernel.bootstrap import Kernel
from runkernel.domain.ids import new_id
from runkernel.domain.incidents import stale_incident
from runkernel.domain.lessons import Lesson, LessonKind, LessonState
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.worker import WorkerPool
from support.workers import wait_until

FINAL_PHASES = ("COMPLETED", "FAILED")
# Fails at the second step's budget check: the echo model spends more than 5 tokens on
# the first, so the run ends budget_exceeded, with an incident and a lesson proposing
# a max_tokens rule.
TINY_TOKEN_BUDGET = {"max_tokens": 5}


class MovableClock:
    """The real time plus an offset a test can advance: deadlines pass without sleeping."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def advance(self, ms: int) -> None:
        self.offset_ms += ms


@contextmanager
def api(kernel: Kernel) -> Iterator[TestClient]:
    with TestClient(create_app(kernel)) as client:
        yield client


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def submit(client: TestClient, api_key: str, agent_id: str, plan: Any, **extra: Any) -> str:
    body = {"agent_id": agent_id, "plan": plan, **extra}
    response = client.post("/api/v1/runs", json=body, headers=bearer(api_key))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def finish(kernel: Kernel, client: TestClient, api_key: str, run_ids: list[str]) -> list[Any]:
    """Run a worker pool until every run in ``run_ids`` is final; their final bodies."""
    pool = WorkerPool(kernel, concurrency=2).start()
    try:

        def all_final() -> list[Any] | None:
            runs = [
                client.get(f"/api/v1/runs/{run_id}", headers=bearer(api_key)).json()
                for run_id in run_ids
            ]
            return runs if all(r["phase"] in FINAL_PHASES for r in runs) else None

        return wait_until(all_final, timeout=30, what="the runs to finish")
    finally:
        pool.stop(drain_timeout_s=5)


def add_stale_incident(kernel: Kernel, tenant_id: str, run_id: str) -> str:
    """Store a STALE_RUN incident for ``run_id`` directly, as the audit sweep would."""
    incident = stale_incident(
        run_id,
        tenant_id,
        ("orchestrator/finalize_run",),
        now_ms=kernel.clock.now_ms(),
        new_id=new_id,
    )
    with kernel.uow() as uow:
        assert uow.incidents.add(incident)
        uow.commit()
    return incident.id


def add_lesson(
    kernel: Kernel, tenant_id: str, agent_id: str, run_id: str, *, proposes_rule: bool = True
) -> str:
    """Store a pending failure lesson, proposing a WARN max_tokens rule unless told not to."""
    now = kernel.clock.now_ms()
    rule = {
        "kind": "max_tokens",
        "params": {"max_tokens": 500},
        "enforcement": "WARN",
        "scope": "agent",
        "agent_id": agent_id,
    }
    lesson = Lesson(
        id=new_id("lsn"),
        tenant_id=tenant_id,
        agent_id=agent_id,
        run_id=run_id,
        kind=LessonKind.FAILURE,
        dedupe_key=f"test:{new_id('key')}",
        state=LessonState.PENDING,
        title="a lesson",
        detail={"why": "test"},
        proposed_rule=rule if proposes_rule else None,
        created_at_ms=now,
        updated_at_ms=now,
    )
    with kernel.uow() as uow:
        assert uow.lessons.add(lesson)
        uow.commit()
    return lesson.id
