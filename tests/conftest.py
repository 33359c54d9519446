"""Shared fixtures: real databases (SQLite files, a throwaway PostgreSQL database per test
run), kernels built on them, and a tenant with an agent.

PostgreSQL and Redis tests skip with a visible reason when the server is absent, and fail
instead when ``CI`` is set, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from runkernel.adapters.audit_store import MemoryAuditStore, SqlAuditStore
from runkernel.adapters.audit_store.redis import RedisAuditStore
from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.config import Settings
from runkernel.domain.records import Agent, Principal
from runkernel.entrypoints.api import create_app
from runkernel.services.ports import AuditStore

POSTGRES_URL = os.environ.get(
    "RUNKERNEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("RUNKERNEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, why: str) -> None:
    message = f"{what} unavailable: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: these tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Create a database with a random name for this test run; drop it at the end."""
    try:
        import psycopg
    except ImportError as exc:
        _unavailable("PostgreSQL", f"psycopg not installed ({exc})")
    name = f"rk_test_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", f"{POSTGRES_URL}: {exc}")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A clean schema for each test: tables are emptied between tests."""
    yield postgres_server
    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runkernel.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "mode": "test",
        "poll_interval_s": 0.2,
        "retry_backoff_s": 0.0,
        "lease_s": 5.0,
        # Off unless a test sets them (tests/integration/test_api_rate_limits.py): a test
        # must not pass or fail by how fast it sends requests.
        "rate_limit_key_per_s": 0,
        "rate_limit_tenant_per_s": 0,
        # Agents unlimited unless a test limits one (tests/integration/test_agent_concurrency.py):
        # a test must not wait on a limit it does not test.
        "default_max_concurrent_runs": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def kernel(database_url: str) -> Iterator[Kernel]:
    k = build_kernel(make_settings(database_url))
    k.migrate()
    yield k
    k.close()


@dataclass(frozen=True)
class TenantContext:
    principal: Principal
    api_key: str
    agent: Agent


def make_tenant(
    kernel: Kernel, name: str | None = None, budget_usd: float = 100.0
) -> TenantContext:
    created = kernel.tenancy.create_tenant(name or f"tenant-{secrets.token_hex(4)}")
    principal = kernel.tenancy.authenticate(created.api_key)
    agent = kernel.tenancy.create_agent(principal, "agent", budget_usd)
    return TenantContext(principal, created.api_key, agent)


@pytest.fixture
def tenant(kernel: Kernel) -> TenantContext:
    return make_tenant(kernel)


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    """The API over ``kernel``, in-process."""
    with TestClient(create_app(kernel)) as test_client:
        yield test_client


def auth(tenant: TenantContext) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


ECHO_PLAN = {
    "steps": [
        {
            "step_id": "ask",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": "hello governed world"}],
                "max_tokens": 50,
            },
        },
        {
            "step_id": "pick",
            "skill": "json.transform",
            "params": {"data": "{{steps.ask.output}}", "expression": "content"},
        },
        {
            "step_id": "again",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": "echo: {{steps.pick.output}}"}],
                "max_tokens": 50,
            },
            "output_key": "answer",
        },
    ]
}


# -- audit stores and Redis (contract tests) ------------------------------------------
RUN_PREFIX = f"rk_test_{secrets.token_hex(6)}"


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", f"{REDIS_URL}: {exc}")
    yield client
    _delete_prefix(client, RUN_PREFIX)
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone, emptied afterwards."""
    prefix = f"{RUN_PREFIX}:{secrets.token_hex(4)}"
    yield prefix
    _delete_prefix(redis_client, prefix)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def audit_store(request: pytest.FixtureRequest) -> Iterator[AuditStore]:
    """Each audit store backend in turn."""
    if request.param == "memory":
        yield MemoryAuditStore()
    elif request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        yield RedisAuditStore(request.getfixturevalue("redis_client"), prefix=prefix, ttl_s=60)
    else:
        yield SqlAuditStore(_database(request))


def _database(request: pytest.FixtureRequest) -> Database:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    db = open_database(str(request.getfixturevalue(fixture)))
    migrate.upgrade(db)
    request.addfinalizer(db.dispose)
    return db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audit_db(request: pytest.FixtureRequest) -> Database:
    """A migrated database, once SQLite and once PostgreSQL."""
    return _database(request)
