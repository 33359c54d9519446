"""Fixtures for contract suites: every backend of a port, real servers included.

Redis: one random key prefix per test run, and a sub-prefix per test; at the end only
keys under the run's prefix are deleted, never anything else on the shared server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis

from runkernel.adapters.audit_store import MemoryAuditStore, SqlAuditStore
from runkernel.adapters.audit_store.redis import RedisAuditStore
from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.services.ports import AuditStore

# The same variable and skip-or-fail rule as tests/conftest.py (whose module name,
# ``conftest``, this file shares, hence no import from it).
REDIS_URL = os.environ.get("RUNKERNEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_PREFIX = f"rk_test_{secrets.token_hex(6)}"


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


def _unavailable(what: str, why: str) -> None:
    message = f"{what} unavailable: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: these tests must run)")
    pytest.skip(message)


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
