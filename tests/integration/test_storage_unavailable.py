"""A database that cannot take writes — read-only, or full — answers 503
``storage_unavailable`` with a clear message, ``/readyz`` says not ready while it lasts, and
both recover once the fault is gone; reads keep working meanwhile.

Tests may run as root, where a chmod does not stop writes, so the faults are made inside
the databases: SQLite's ``PRAGMA query_only`` (read-only) and ``PRAGMA max_page_count``
(a full file: the same SQLITE_FULL a full disk gives) on every connection of the pool;
PostgreSQL's ``default_transaction_read_only`` on the test's database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from conftest import POSTGRES_URL, TenantContext, auth
from runkernel.bootstrap import Kernel
from runkernel.errors import StorageUnavailableError
from runkernel.services.executor import Execution
from support.governance import claim_run

Fault = Callable[[Kernel], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def on_every_sqlite_connection(kernel: Kernel, pragma: Callable[[Any], str]) -> Iterator[None]:
    """Run ``pragma(dbapi_connection)`` on each new connection; drop the pooled ones so
    every connection used meanwhile has it, and again afterwards so none keeps it."""
    engine = kernel.db.engine

    def apply(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(pragma(dbapi_connection))

    event.listen(engine, "connect", apply)
    engine.dispose()
    try:
        yield
    finally:
        event.remove(engine, "connect", apply)
        engine.dispose()


def sqlite_read_only(kernel: Kernel) -> contextlib.AbstractContextManager[None]:
    return on_every_sqlite_connection(kernel, lambda _conn: "PRAGMA query_only = ON")


def sqlite_full(kernel: Kernel) -> contextlib.AbstractContextManager[None]:
    def cap(conn: Any) -> str:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return f"PRAGMA max_page_count = {pages}"

    return on_every_sqlite_connection(kernel, cap)


@contextlib.contextmanager
def postgres_read_only(kernel: Kernel) -> Iterator[None]:
    name = make_url(kernel.settings.database_url).database

    def alter(clause: str) -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" {clause}')
        kernel.db.engine.dispose()  # the setting applies to new sessions

    alter("SET default_transaction_read_only = on")
    try:
        yield
    finally:
        alter("RESET default_transaction_read_only")


FAULTS: dict[str, tuple[str, Fault, str]] = {
    "sqlite-read-only": ("sqlite", sqlite_read_only, "the database is read-only"),
    "sqlite-full": ("sqlite", sqlite_full, "full"),
    "postgres-read-only": ("postgres", postgres_read_only, "the database is read-only"),
}


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest) -> tuple[Fault, str]:
    database, make_fault, message = FAULTS[request.param]
    if request.getfixturevalue("kernel").db.is_sqlite != (database == "sqlite"):
        pytest.skip(f"a {database} fault")
    return make_fault, message


# Large enough to need new pages, so a full SQLite file cannot fit it in free space: the
# run row (metadata) at submission, the step's input when a worker records the step.
PADDING = "p" * 60_000
BIG_PLAN = {
    "steps": [
        {
            "step_id": "ask",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": PADDING}],
                "max_tokens": 5,
            },
        }
    ]
}


def submit(client: TestClient, tenant: TenantContext) -> Any:
    body = {"agent_id": tenant.agent.id, "plan": BIG_PLAN, "metadata": {"padding": PADDING}}
    return client.post("/api/v1/runs", json=body, headers=auth(tenant))


def test_writes_answer_503_and_readyz_is_not_ready_until_the_fault_is_gone(
    kernel: Kernel, client: TestClient, tenant: TenantContext, fault: tuple[Fault, str]
) -> None:
    make_fault, message = fault
    assert submit(client, tenant).status_code == 202
    assert client.get("/readyz").status_code == 200

    with make_fault(kernel):
        before_any_write = client.get("/readyz")
        refused = submit(client, tenant)
        after_the_failure = client.get("/readyz")
        listed = client.get("/api/v1/runs", headers=auth(tenant))

    for response in (before_any_write, refused, after_the_failure):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "storage_unavailable" and message in error["message"]
    assert listed.status_code == 200 and len(listed.json()["runs"]) == 1  # reads still work

    assert submit(client, tenant).status_code == 202
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert len(client.get("/api/v1/runs", headers=auth(tenant)).json()["runs"]) == 2


def test_a_worker_that_cannot_write_ends_its_attempt_without_crashing(
    kernel: Kernel, client: TestClient, tenant: TenantContext, fault: tuple[Fault, str]
) -> None:
    make_fault, _message = fault
    run_id = submit(client, tenant).json()["id"]
    run, claim = claim_run(kernel, run_id, "worker-under-fault")

    with make_fault(kernel):
        outcome = kernel.executor.execute(run, Execution(claim))

    # Which write meets the fault first (the step, or the completion after retries)
    # depends on what still fits; either way the attempt ends and the run stays the
    # claimed one, left to its lease, with no final state written.
    assert outcome in ("storage_unavailable", "completion_failed")
    detail = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant)).json()
    assert (detail["status"], detail["phase"], detail["attempt"]) == ("running", "EXECUTING", 1)


def test_a_unit_of_work_under_the_fault_raises_storage_unavailable_from_the_driver_error(
    kernel: Kernel, tenant: TenantContext, fault: tuple[Fault, str]
) -> None:
    make_fault, message = fault
    with make_fault(kernel), pytest.raises(StorageUnavailableError) as info:
        kernel.tenancy.create_agent(tenant.principal, "x" * 190, 1.0)
        kernel.runs.submit(
            tenant.principal,
            agent_id=tenant.agent.id,
            plan=BIG_PLAN,
            metadata={"padding": PADDING},
        )
    assert message in info.value.message
    assert info.value.__cause__ is not None  # raised from the driver's error
