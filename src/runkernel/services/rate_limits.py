"""Request rate limits: a token bucket per API key and one per tenant.

A request takes one token from its key's bucket and one from its tenant's (an operator key,
of no tenant, only from its key's); when either is
empty the request is refused with ``RateLimitedError`` (429) and the seconds until both
have a token again (``Retry-After``), and neither bucket is charged. A rate of 0 turns
that bucket off.

Buckets live in the memory of one API process: N API processes allow N times the rate
(put a shared limit in the load balancer when that matters). Only authenticated callers
get buckets, so unknown keys cannot grow the tables, and each table is bounded: past
``max_buckets`` the bucket unused the longest is dropped. A bucket idle for ``burst /
rate`` seconds is full again, and a full bucket is what a new one is, so dropping idle
buckets loses nothing; only more than ``max_buckets`` keys busy at once would reset one.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from runkernel.domain.records import Principal
from runkernel.errors import RateLimitedError
from runkernel.services.ports import Clock

MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Rate:
    per_s: float  # 0: unlimited
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_s <= 0


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate.per_s``; time comes in as ``now_ms``."""

    rate: Rate
    tokens: float
    updated_ms: int

    @classmethod
    def full(cls, rate: Rate, now_ms: int) -> TokenBucket:
        return cls(rate, float(rate.burst), now_ms)

    def refill(self, now_ms: int) -> None:
        # A clock that steps back adds nothing (and is not held against the caller).
        elapsed_ms = max(0, now_ms - self.updated_ms)
        self.tokens = min(float(self.rate.burst), self.tokens + elapsed_ms * self.rate.per_s / 1000)
        self.updated_ms = max(self.updated_ms, now_ms)

    def wait_s(self) -> float:
        """Seconds until a token is there (0: one is there now)."""
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate.per_s

    def take(self) -> None:
        self.tokens -= 1.0


class _Buckets:
    """Buckets by name, least recently used first, at most ``limit`` of them."""

    def __init__(self, rate: Rate, limit: int) -> None:
        self.rate = rate
        self._limit = limit
        self._by_name: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str, now_ms: int) -> TokenBucket:
        bucket = self._by_name.get(name)
        if bucket is None:
            bucket = self._by_name[name] = TokenBucket.full(self.rate, now_ms)
            if len(self._by_name) > self._limit:
                self._by_name.popitem(last=False)
        else:
            self._by_name.move_to_end(name)
            bucket.refill(now_ms)
        return bucket


class RateLimiter:
    def __init__(
        self, *, per_key: Rate, per_tenant: Rate, clock: Clock, max_buckets: int = MAX_BUCKETS
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # requests are served from a thread pool
        self._keys = _Buckets(per_key, max_buckets)
        self._tenants = _Buckets(per_tenant, max_buckets)

    @property
    def bucket_count(self) -> int:
        return len(self._keys) + len(self._tenants)

    def check(self, principal: Principal) -> None:
        """Charge one request to the caller's key and tenant, or raise ``RateLimitedError``."""
        with self._lock:
            now = self._clock.now_ms()
            charged = [
                (what, table.get(name, now))
                for what, table, name in (
                    ("key", self._keys, principal.key_id),
                    ("tenant", self._tenants, principal.home_tenant_id),
                )
                # An operator key has no tenant: only its key's bucket holds it back.
                if name is not None and not table.rate.unlimited
            ]
            if charged:
                what, worst = max(charged, key=lambda named: named[1].wait_s())
                wait_s = worst.wait_s()
                if wait_s > 0:
                    raise RateLimitedError(
                        f"too many requests for this {what}: {worst.rate.per_s:g} per second, "
                        f"bursts of {worst.rate.burst}; retry in {math.ceil(wait_s)} s",
                        retry_after_s=wait_s,
                    )
            for _, bucket in charged:
                bucket.take()
