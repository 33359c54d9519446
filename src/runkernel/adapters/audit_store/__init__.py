"""Audit stores of the runtime audit contract: memory, SQL (the default) and Redis.

``build_audit_store`` picks one from ``Settings.audit_store`` and refuses, through
``check_durability``, to run mode test or prod on a store that forgets on restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runkernel.adapters.audit_store.memory import MemoryAuditStore
from runkernel.adapters.audit_store.repository import SqlAuditRepository
from runkernel.adapters.audit_store.sql import SqlAuditStore
from runkernel.config import Mode, Settings
from runkernel.errors import ConfigurationError, RACDurabilityError
from runkernel.services.ports import AuditStore

if TYPE_CHECKING:
    import redis

    from runkernel.adapters.db.engine import Database

__all__ = [
    "MemoryAuditStore",
    "SqlAuditRepository",
    "SqlAuditStore",
    "build_audit_store",
    "check_durability",
]


def build_audit_store(
    settings: Settings, db: Database, redis_client: redis.Redis | None = None
) -> AuditStore:
    """The store ``settings`` ask for, checked for durability. For ``redis`` the client
    is ``redis_client`` if given, else one built (lazily connecting) from ``redis_url``."""
    store: AuditStore
    if settings.audit_store == "memory":
        store = MemoryAuditStore()
    elif settings.audit_store == "sql":
        store = SqlAuditStore(db)
    else:
        from runkernel.adapters.audit_store.redis import RedisAuditStore

        if redis_client is None:
            if not settings.redis_url:
                raise ConfigurationError(
                    "RUNKERNEL_AUDIT_STORE=redis needs RUNKERNEL_REDIS_URL (redis://host:port/db)"
                )
            import redis as redis_lib

            redis_client = redis_lib.Redis.from_url(settings.redis_url)
        store = RedisAuditStore(redis_client, ttl_s=settings.audit_redis_ttl_s)
    check_durability(settings, store)
    return store


def check_durability(settings: Settings, store: AuditStore) -> None:
    """Mode test/prod with the audit contract on need a store that survives a crash."""
    if store.durable or settings.mode is Mode.LOCAL or not settings.audit_contract_enabled:
        return
    raise RACDurabilityError(
        f"mode {settings.mode.value} with the audit contract enabled needs a durable audit "
        f"store, but {type(store).__name__} keeps acks in one process's memory: set "
        "RUNKERNEL_AUDIT_STORE=sql (the default) or redis, or use RUNKERNEL_MODE=local"
    )
