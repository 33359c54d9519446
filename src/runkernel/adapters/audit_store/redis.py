"""The Redis audit store, for deployments that scale out.

Keys (``prefix`` defaults to ``rac``):

- ``{prefix}:expectations:{run_id}``, ``{prefix}:acks:{run_id}``: LISTs of JSON records,
  appended with RPUSH, so writers in any number of processes never read-modify-write;
- ``{prefix}:ack_ids:{run_id}``: SET of the run's ack ids. ``add_ack`` is one Lua script
  that RPUSHes only when SADD added the id, so an ack delivered twice (a forwarder that
  crashed between the write and its mark) is stored once;
- ``{prefix}:deadlines``: sorted set, run id scored by its finalize_run deadline, left when
  the run's reconciliation is saved (this is what ``get_pending_run_ids`` scans);
- ``{prefix}:reconciliations:{run_id}``: the saved result, written with SET NX;
- ``{prefix}:reconciliation_index:{tenant|*}:{status|*}``: sorted sets by reconciliation
  time, for listing (entries whose result has expired are dropped when met).

Each write refreshes its run's keys in the same MULTI (``add_ack``: in its script). A run's
keys live ``ttl_s`` past its finalize deadline (or past the last write, whichever is
later), so the record of a run whose worker died is still there when the sweep
reconciles it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from runkernel.domain.audit import (
    FINALIZE_RUN,
    AuditExpectation,
    DomainAck,
    ReconciliationResult,
    ReconciliationStatus,
    settle_expectations,
)

Client = redis.Redis

# KEYS: acks, ack_ids, expectations, deadlines. ARGV: ack id, record, run id, created_at_ms,
# ttl_ms. Refreshes the run's keys as every write does (ttl past the finalize deadline).
_ADD_ACK = """
local deadline = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[3]) or '0')
local ttl = tonumber(ARGV[5]) + math.max(0, deadline - tonumber(ARGV[4]))
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return added
"""


class RedisAuditStore:
    durable = True

    def __init__(self, client: Client, *, prefix: str = "rac", ttl_s: int = 3600) -> None:
        self._r = client
        self._prefix = prefix
        self._ttl_ms = ttl_s * 1000
        self._deadlines = f"{prefix}:deadlines"
        self._add_ack = client.register_script(_ADD_ACK)

    def _key(self, kind: str, run_id: str) -> str:
        return f"{self._prefix}:{kind}:{run_id}"

    def _indexes(self, tenant_id: str | None, status: str) -> list[str]:
        base = f"{self._prefix}:reconciliation_index"
        keys = [f"{base}:*:*", f"{base}:*:{status}"]
        if tenant_id is not None:
            keys += [f"{base}:{tenant_id}:*", f"{base}:{tenant_id}:{status}"]
        return keys

    def add_expectations(self, expectations: Sequence[AuditExpectation]) -> None:
        by_run: dict[str, list[AuditExpectation]] = {}
        for exp in expectations:
            by_run.setdefault(exp.run_id, []).append(exp)
        with self._r.pipeline(transaction=True) as pipe:
            for run_id, items in by_run.items():
                finals = [e for e in items if e.key() == FINALIZE_RUN and e.deadline_ms is not None]
                deadlines = [e.deadline_ms for e in items if e.deadline_ms is not None]
                now = min(e.created_at_ms for e in items)
                ttl_ms = self._ttl_ms + max(0, max(deadlines, default=now) - now)
                pipe.rpush(self._key("expectations", run_id), *(_dump(e.to_dict()) for e in items))
                if finals:
                    deadline = min(e.deadline_ms for e in finals if e.deadline_ms is not None)
                    pipe.zadd(self._deadlines, {run_id: deadline})
                pipe.pexpire(self._key("expectations", run_id), ttl_ms)
                pipe.pexpire(self._key("acks", run_id), ttl_ms)
                pipe.pexpire(self._key("ack_ids", run_id), ttl_ms)
            pipe.execute()

    def add_ack(self, ack: DomainAck) -> None:
        """Idempotent by ack id (one atomic script: SADD the id, RPUSH only if new)."""
        run_id = ack.run_id
        keys = [self._key(k, run_id) for k in ("acks", "ack_ids", "expectations")]
        self._add_ack(
            keys=[*keys, self._deadlines],
            args=[ack.id, _dump(ack.to_dict()), run_id, ack.created_at_ms, self._ttl_ms],
        )

    def expectations(self, run_id: str) -> list[AuditExpectation]:
        raw = self._r.lrange(self._key("expectations", run_id), 0, -1)
        return sorted(
            (AuditExpectation.from_dict(json.loads(item)) for item in raw),
            key=lambda e: (e.created_at_ms, e.id),
        )

    def acks(self, run_id: str) -> list[DomainAck]:
        raw = self._r.lrange(self._key("acks", run_id), 0, -1)
        return sorted(
            (DomainAck.from_dict(json.loads(item)) for item in raw),
            key=lambda a: (a.created_at_ms, a.id),
        )

    def load_from_redis(self, run_id: str) -> tuple[list[AuditExpectation], list[DomainAck]]:
        """Everything Redis holds of one run: its expectations and acks."""
        return self.expectations(run_id), self.acks(run_id)

    def get_pending_run_ids(self, now_ms: int, *, limit: int = 100) -> list[str]:
        due = self._r.zrangebyscore(self._deadlines, "-inf", f"({now_ms}", start=0, num=limit)
        run_ids = [_text(m) for m in due]
        with self._r.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.exists(self._key("reconciliations", run_id))
            saved = pipe.execute()
        done = [run_id for run_id, exists in zip(run_ids, saved, strict=True) if exists]
        if done:  # a save interrupted between its SET and its ZREM
            self._r.zrem(self._deadlines, *done)
        return [run_id for run_id in run_ids if run_id not in done]

    def save_reconciliation(
        self, result: ReconciliationResult, tenant_id: str | None, *, replace: bool = False
    ) -> bool:
        run_id = result.run_id
        key = self._key("reconciliations", run_id)
        payload = _dump({"tenant_id": tenant_id, "result": result.to_dict()})
        old = self._r.get(key) if replace else None
        if not self._r.set(key, payload, nx=not replace, px=self._ttl_ms):
            return False
        exp_key = self._key("expectations", run_id)
        stored = [AuditExpectation.from_dict(json.loads(i)) for i in self._r.lrange(exp_key, 0, -1)]
        settled = settle_expectations(stored, self.acks(run_id))
        with self._r.pipeline(transaction=True) as pipe:
            # Lists are only ever appended to, so a position read above is still valid.
            for index, (before, after) in enumerate(zip(stored, settled, strict=True)):
                if before != after:
                    pipe.lset(exp_key, index, _dump(after.to_dict()))
            pipe.zrem(self._deadlines, run_id)
            if old is not None:
                previous = json.loads(old)
                for index_key in self._indexes(previous["tenant_id"], previous["result"]["status"]):
                    pipe.zrem(index_key, run_id)
            for index_key in self._indexes(tenant_id, result.status.value):
                pipe.zadd(index_key, {run_id: result.reconciled_at_ms})
            pipe.execute()
        return True

    def reconciliation(self, run_id: str) -> ReconciliationResult | None:
        raw = self._r.get(self._key("reconciliations", run_id))
        return ReconciliationResult.from_dict(json.loads(raw)["result"]) if raw else None

    def reconciliations(
        self,
        *,
        status: ReconciliationStatus | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
    ) -> list[ReconciliationResult]:
        index_key = f"{self._prefix}:reconciliation_index:{tenant_id or '*'}:{status or '*'}"
        run_ids = [_text(m) for m in self._r.zrevrange(index_key, 0, limit - 1)]
        if not run_ids:
            return []
        raws = self._r.mget([self._key("reconciliations", r) for r in run_ids])
        expired = [run_id for run_id, raw in zip(run_ids, raws, strict=True) if raw is None]
        if expired:
            self._r.zrem(index_key, *expired)
        return [ReconciliationResult.from_dict(json.loads(raw)["result"]) for raw in raws if raw]

    def clear_run(self, run_id: str) -> None:
        raw = self._r.get(self._key("reconciliations", run_id))
        with self._r.pipeline(transaction=True) as pipe:
            for kind in ("expectations", "acks", "ack_ids", "reconciliations"):
                pipe.delete(self._key(kind, run_id))
            pipe.zrem(self._deadlines, run_id)
            if raw is not None:
                stored = json.loads(raw)
                for index_key in self._indexes(stored["tenant_id"], stored["result"]["status"]):
                    pipe.zrem(index_key, run_id)
            pipe.execute()


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
