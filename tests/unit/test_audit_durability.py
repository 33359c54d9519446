"""Choosing the audit store, and refusing a store that forgets in mode test/prod."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from runkernel.adapters.audit_store import (
    MemoryAuditStore,
    SqlAuditStore,
    build_audit_store,
    check_durability,
)
from runkernel.adapters.audit_store.redis import RedisAuditStore
from runkernel.adapters.db.engine import Database, open_database
from runkernel.config import Settings
from runkernel.errors import ConfigurationError, RACDurabilityError


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'a.db'}")  # lazy: nothing connects


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def test_the_default_is_the_sql_store(db: Database) -> None:
    assert settings().audit_store == "sql"
    assert isinstance(build_audit_store(settings(mode="prod"), db), SqlAuditStore)


@pytest.mark.parametrize("mode", ["test", "prod"])
def test_test_and_prod_refuse_the_memory_store(db: Database, mode: str) -> None:
    with pytest.raises(RACDurabilityError, match="RUNKERNEL_AUDIT_STORE") as caught:
        build_audit_store(settings(mode=mode, audit_store="memory"), db)
    assert caught.value.code == "rac_durability"
    assert isinstance(caught.value, ConfigurationError)


def test_local_allows_the_memory_store(db: Database) -> None:
    store = build_audit_store(settings(mode="local", audit_store="memory"), db)
    assert isinstance(store, MemoryAuditStore) and not store.durable


def test_memory_is_allowed_when_the_contract_is_off(db: Database) -> None:
    s = settings(mode="prod", audit_store="memory", audit_contract_enabled=False)
    assert isinstance(build_audit_store(s, db), MemoryAuditStore)


def test_durable_stores_pass_the_check(db: Database) -> None:
    for store in (SqlAuditStore(db), RedisAuditStore(redis.Redis())):
        check_durability(settings(mode="prod"), store)
    with pytest.raises(RACDurabilityError):
        check_durability(settings(mode="prod"), MemoryAuditStore())


def test_redis_needs_a_url_or_a_client(db: Database) -> None:
    with pytest.raises(ConfigurationError, match="RUNKERNEL_REDIS_URL"):
        build_audit_store(settings(mode="prod", audit_store="redis"), db)
    s = settings(mode="prod", audit_store="redis", redis_url="redis://127.0.0.1:1/0")
    assert isinstance(build_audit_store(s, db), RedisAuditStore)  # connects lazily
    assert isinstance(build_audit_store(s, db, redis.Redis()), RedisAuditStore)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNKERNEL_AUDIT_STORE", "redis")
    monkeypatch.setenv("RUNKERNEL_GRACE_PERIOD_MS", "250")
    s = Settings()
    assert (s.audit_store, s.grace_period_ms, s.audit_redis_ttl_s) == ("redis", 250, 3600)
    monkeypatch.setenv("RUNKERNEL_AUDIT_STORE", "disk")
    with pytest.raises(ValueError, match="audit_store"):
        Settings()
