"""What only the Redis audit store promises: its key layout, TTLs, and atomic appends from
many processes."""

from __future__ import annotations

import multiprocessing
import secrets

import pytest
import redis

from runkernel.adapters.audit_store.redis import RedisAuditStore
from runkernel.domain.audit import (
    STANDARD_EXPECTATIONS,
    ReconciliationResult,
    ReconciliationStatus,
    create_domain_ack,
    create_run_expectations,
)

pytestmark = pytest.mark.redis

T0, TIMEOUT, GRACE, TTL_S = 1_000_000, 60_000, 5_000, 30


@pytest.fixture
def store(redis_client: redis.Redis, redis_prefix: str) -> RedisAuditStore:
    return RedisAuditStore(redis_client, prefix=redis_prefix, ttl_s=TTL_S)


def _run(store: RedisAuditStore) -> str:
    run_id = f"run_{secrets.token_hex(8)}"
    store.add_expectations(
        create_run_expectations(
            run_id, tenant_id="t", run_timeout_ms=TIMEOUT, grace_period_ms=GRACE, now_ms=T0
        )
    )
    return run_id


def test_key_layout(store: RedisAuditStore, redis_client: redis.Redis, redis_prefix: str) -> None:
    run_id = _run(store)
    store.add_ack(create_domain_ack(run_id, "logs", "start_trace", now_ms=T0 + 1))
    assert redis_client.type(f"{redis_prefix}:expectations:{run_id}") == b"list"
    assert redis_client.type(f"{redis_prefix}:acks:{run_id}") == b"list"
    assert redis_client.type(f"{redis_prefix}:ack_ids:{run_id}") == b"set"  # add_ack dedupes
    assert redis_client.pttl(f"{redis_prefix}:ack_ids:{run_id}") > 0
    assert redis_client.llen(f"{redis_prefix}:expectations:{run_id}") == 5
    deadline = redis_client.zscore(f"{redis_prefix}:deadlines", run_id)
    assert deadline == T0 + TIMEOUT + GRACE
    expectations, acks = store.load_from_redis(run_id)
    assert [e.key() for e in expectations] == list(STANDARD_EXPECTATIONS)
    assert [a.action for a in acks] == ["start_trace"]


def test_keys_outlive_the_deadline_and_writes_refresh_them(
    store: RedisAuditStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    run_id = _run(store)
    exp_key, ack_key = f"{redis_prefix}:expectations:{run_id}", f"{redis_prefix}:acks:{run_id}"
    horizon_ms = TTL_S * 1000 + TIMEOUT + GRACE
    assert horizon_ms - 5_000 < redis_client.pttl(exp_key) <= horizon_ms
    redis_client.pexpire(exp_key, 1_000)
    store.add_ack(create_domain_ack(run_id, "logs", "start_trace", now_ms=T0))
    assert redis_client.pttl(exp_key) > horizon_ms - 5_000
    assert redis_client.pttl(ack_key) > horizon_ms - 5_000
    # Once past the deadline a write keeps the run's keys for ttl_s more.
    late = T0 + TIMEOUT + GRACE + 999_000
    store.add_ack(create_domain_ack(run_id, "logs", "complete_trace", now_ms=late))
    assert TTL_S * 1000 - 5_000 < redis_client.pttl(ack_key) <= TTL_S * 1000


def _append_acks(prefix: str, url: str, run_id: str, worker: int, count: int) -> None:
    client = redis.Redis.from_url(url)
    child = RedisAuditStore(client, prefix=prefix, ttl_s=TTL_S)
    for i in range(count):
        child.add_ack(create_domain_ack(run_id, "d", f"w{worker}_{i}", now_ms=T0 + i))
    client.close()


def test_appends_from_several_processes_lose_nothing(
    store: RedisAuditStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    run_id = _run(store)
    url = "redis://{host}:{port}/{db}".format(**redis_client.connection_pool.connection_kwargs)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_append_acks, args=(redis_prefix, url, run_id, w, 40)) for w in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    acks = store.acks(run_id)
    assert len(acks) == 160 and len({a.action for a in acks}) == 160


def test_a_listed_result_whose_key_expired_is_dropped(
    store: RedisAuditStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    for run_id, at in (("run_a", 1), ("run_b", 2)):
        result = ReconciliationResult(
            run_id, ReconciliationStatus.STALE, (), (), (), True, (), at, 5, 0
        )
        assert store.save_reconciliation(result, "t")
    redis_client.delete(f"{redis_prefix}:reconciliations:run_b")  # as if its TTL ran out
    assert [r.run_id for r in store.reconciliations()] == ["run_a"]
    assert redis_client.zcard(f"{redis_prefix}:reconciliation_index:*:*") == 1


def test_a_save_interrupted_before_leaving_the_deadlines_is_not_pending(
    store: RedisAuditStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    run_id = _run(store)
    result = ReconciliationResult(run_id, ReconciliationStatus.STALE, (), (), (), True, (), 9, 5, 0)
    store.save_reconciliation(result, "t")
    redis_client.zadd(f"{redis_prefix}:deadlines", {run_id: T0})  # as if the ZREM never ran
    assert store.get_pending_run_ids(T0 + 10**9) == []
    assert redis_client.zscore(f"{redis_prefix}:deadlines", run_id) is None
