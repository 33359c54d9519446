"""Governance with the Redis audit store (issue 3 acceptance): expectations go to Redis at
T0, acks only once the completion has committed (through a durable hand-off in the
database, so a Redis fault loses none), and a run is COMPLETE and clean — also
after a completion that rolled back and left ROLLED_BACK acks of acks Redis never saw.

``build_kernel`` builds the store with the default ``rac`` key prefix, so these tests touch
only the keys of their own (unique) run ids and delete them afterwards; they never sweep
(``rac:deadlines`` is shared with anything else on the server).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from conftest import ECHO_PLAN, REDIS_URL, _unavailable, make_settings, make_tenant
from runkernel.adapters.audit_store.redis import RedisAuditStore
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.audit import ReconciliationStatus
from runkernel.entrypoints.background import AckForwarderRunner
from support.governance import (
    ACKED_BEFORE,
    FAILING_PLAN,
    POINTS,
    STANDARD_KEYS,
    FailOnce,
    Recorder,
    assert_nothing_final,
    drive,
    snapshot,
)
from support.workers import wait_until


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", f"{REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def rkernel(database_url: str, redis_client: redis.Redis) -> Iterator[Kernel]:
    settings = make_settings(database_url, audit_store="redis", redis_url=REDIS_URL)
    k = build_kernel(settings, redis_client=redis_client)
    k.migrate()
    assert isinstance(k.audit, RedisAuditStore)
    run_ids: list[str] = []
    k.test_run_ids = run_ids  # type: ignore[attr-defined]
    yield k
    for run_id in run_ids:
        k.audit.clear_run(run_id)
    k.close()


def _submit(kernel: Kernel, plan: dict[str, object]) -> str:
    tenant = make_tenant(kernel)
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    kernel.test_run_ids.append(run_id)  # type: ignore[attr-defined]
    return run_id


def _assert_clean(kernel: Kernel, run_id: str) -> None:
    result = kernel.reconciler.reconcile_now(run_id)
    assert result is not None
    assert result.status is ReconciliationStatus.COMPLETE and result.is_clean(), result
    assert (result.expected_count, result.acked_count) == (5, 5)


def test_a_normal_run_is_complete_and_its_acks_are_written_after_commit(
    rkernel: Kernel, redis_client: redis.Redis
) -> None:
    kernel = rkernel
    run_id = _submit(kernel, ECHO_PLAN)
    # T0 put the five expectations in Redis (and none in SQL).
    assert sorted(e.key() for e in kernel.audit.expectations(run_id)) == sorted(STANDARD_KEYS)
    assert redis_client.llen(f"rac:expectations:{run_id}") == 5
    assert redis_client.zscore("rac:deadlines", run_id) is not None

    recorder = Recorder(kernel, run_id)
    kernel.completion.fault = recorder
    assert drive(kernel, run_id) == "succeeded"
    # Up to the commit, Redis held only the start's ack: acks follow the commit.
    assert list(recorder.seen) == list(POINTS)
    for seen in recorder.seen.values():
        assert_nothing_final(seen)

    final = snapshot(kernel, run_id)
    assert final.acks_with("SUCCESS") == Counter(STANDARD_KEYS)
    assert final.acks_with("ROLLED_BACK") == Counter()
    assert redis_client.llen(f"rac:acks:{run_id}") == 5
    assert redis_client.pttl(f"rac:acks:{run_id}") > 0  # keys expire (TTL), never linger
    _assert_clean(kernel, run_id)


@pytest.mark.parametrize("point", ["incident", "commit"])
def test_a_rolled_back_completion_leaves_rolled_back_acks_and_the_retry_is_clean(
    rkernel: Kernel, point: str
) -> None:
    kernel = rkernel
    run_id = _submit(kernel, FAILING_PLAN)
    hook = FailOnce(kernel, run_id, point)
    kernel.completion.fault = hook
    assert drive(kernel, run_id) == "failed"
    assert hook.at_failure is not None and hook.after_rollback is not None
    assert_nothing_final(hook.at_failure)
    assert_nothing_final(hook.after_rollback)
    assert hook.after_rollback.acks_with("ROLLED_BACK") == Counter(ACKED_BEFORE[point])

    final = snapshot(kernel, run_id)
    assert final.incidents == ("EXECUTION_FAILURE",) and final.evaluations == 1
    assert final.acks_with("SUCCESS") == Counter(STANDARD_KEYS)
    assert final.acks_with("ROLLED_BACK") == Counter(ACKED_BEFORE[point])
    _assert_clean(kernel, run_id)


# -- Redis faults (DESIGN invariant 9: a fault in Redis loses no ack) -------------------------


def test_a_redis_fault_right_after_commit_loses_no_ack(
    rkernel: Kernel, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = rkernel
    run_id = _submit(kernel, ECHO_PLAN)
    store = kernel.audit
    original = store.add_ack
    down = {"on": False}

    def add_ack(ack: object) -> None:
        if down["on"]:
            raise redis.ConnectionError("injected: Redis is down")
        original(ack)  # type: ignore[arg-type]

    def at_commit(point: str) -> None:
        if point == "commit":
            down["on"] = True  # Redis goes away while the completion commits

    monkeypatch.setattr(store, "add_ack", add_ack)
    kernel.completion.fault = at_commit
    outcome: object
    try:
        outcome = drive(kernel, run_id)
    except redis.RedisError as exc:  # a store error must not escape the executor
        outcome = exc
    assert snapshot(kernel, run_id).status == "succeeded"  # the run committed
    # Only the start's ack reached Redis; the completion's wait in the database.
    assert redis_client.llen(f"rac:acks:{run_id}") == 1
    forwarder = kernel.ack_forwarder
    assert forwarder is not None
    with pytest.raises(redis.ConnectionError):  # still down: nothing forwarded, nothing lost
        forwarder.forward_once()

    def clean() -> bool:
        result = kernel.reconciler.reconcile_now(run_id)
        return result is not None and result.is_clean()

    down["on"] = False  # Redis is back: the forwarder loop delivers what was left behind
    runner = AckForwarderRunner(forwarder, interval_s=0.05).start()
    try:
        wait_until(clean, timeout=5, what="the completion's acks to reach Redis")
    finally:
        runner.stop()
    assert runner.forwarded >= 4 and forwarder.forward_once() == 0
    assert redis_client.llen(f"rac:acks:{run_id}") == 5
    # Delivered again (a forwarder that crashed before its mark): stored once, no drift.
    for ack in kernel.audit.acks(run_id):
        kernel.audit.add_ack(ack)
    assert redis_client.llen(f"rac:acks:{run_id}") == 5
    _assert_clean(kernel, run_id)
    # And a committed completion is not reported as a crash of the worker.
    assert outcome == "succeeded"
