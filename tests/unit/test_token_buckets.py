"""Token buckets and the per-key / per-tenant limiter, on a clock the test moves."""

from __future__ import annotations

import pytest

from runkernel.domain.records import Principal, Role
from runkernel.errors import RateLimitedError
from runkernel.services.rate_limits import Rate, RateLimiter, TokenBucket

OFF = Rate(0, 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def key(key_id: str, tenant_id: str = "ten_a") -> Principal:
    return Principal(tenant_id, key_id, Role.USER)


def test_a_bucket_holds_its_burst_and_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(Rate(2, 3), now_ms=0)
    for _ in range(3):
        assert bucket.wait_s() == 0
        bucket.take()
    assert bucket.wait_s() == pytest.approx(0.5)  # one token at 2 per second
    bucket.refill(250)
    assert bucket.wait_s() == pytest.approx(0.25)
    bucket.refill(500)
    assert bucket.wait_s() == 0
    bucket.refill(60_000)  # a long idle time fills it to the burst, never beyond
    assert bucket.tokens == 3.0


def test_a_clock_stepping_back_neither_adds_nor_removes_tokens() -> None:
    bucket = TokenBucket.full(Rate(1, 1), now_ms=10_000)
    bucket.take()
    bucket.refill(5_000)
    assert bucket.tokens == 0.0
    bucket.refill(10_500)  # measured from the latest time seen, not the stepped-back one
    assert bucket.tokens == pytest.approx(0.5)


def test_the_key_limit_refuses_past_the_burst_with_the_wait_and_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_key=Rate(1, 2), per_tenant=OFF, clock=clock)
    limiter.check(key("k1"))
    limiter.check(key("k1"))
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(key("k1"))
    assert refused.value.retry_after_s == pytest.approx(1.0)
    assert refused.value.code == "rate_limited" and "this key" in refused.value.message
    limiter.check(key("k2"))  # another key of the tenant has its own bucket
    clock.now += 1000
    limiter.check(key("k1"))
    with pytest.raises(RateLimitedError):
        limiter.check(key("k1"))


def test_the_tenant_limit_counts_all_its_keys_and_not_other_tenants() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_key=Rate(100, 100), per_tenant=Rate(1, 3), clock=clock)
    for name in ("k1", "k2", "k1"):
        limiter.check(key(name))
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(key("k3"))
    assert "this tenant" in refused.value.message
    limiter.check(key("kb", tenant_id="ten_b"))


def test_a_refused_request_is_charged_to_neither_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_key=Rate(1, 1), per_tenant=Rate(1, 2), clock=clock)
    limiter.check(key("k1"))
    for _ in range(5):  # k1 is empty; these must not drain the tenant
        with pytest.raises(RateLimitedError):
            limiter.check(key("k1"))
    limiter.check(key("k2"))  # the tenant's second token is still there


def test_rate_zero_is_unlimited() -> None:
    limiter = RateLimiter(per_key=OFF, per_tenant=OFF, clock=FakeClock())
    for _ in range(10_000):
        limiter.check(key("k1"))
    assert limiter.bucket_count == 0  # no bucket is even kept


def test_the_wait_is_the_longer_of_the_two() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_key=Rate(0.5, 1), per_tenant=Rate(0.25, 1), clock=clock)
    limiter.check(key("k1"))
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(key("k1"))
    assert refused.value.retry_after_s == pytest.approx(4.0)  # the tenant's, not the key's 2


def test_buckets_are_bounded_dropping_the_least_recently_used() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_key=Rate(1, 1), per_tenant=OFF, clock=clock, max_buckets=3)
    limiter.check(key("k0"))
    for i in range(1, 1000):
        limiter.check(key(f"k{i}"))
    assert limiter.bucket_count == 3
    # k0 was dropped long ago: it starts again from a full bucket ...
    limiter.check(key("k0"))
    # ... while a recent key keeps its state.
    with pytest.raises(RateLimitedError):
        limiter.check(key("k999"))


def test_an_operator_key_of_no_tenant_is_held_by_its_key_bucket_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_key=Rate(1, 2), per_tenant=Rate(1, 1), clock=clock)
    operator = Principal.operator("opk_1")
    limiter.check(operator)
    limiter.check(operator)  # a tenant bucket of burst 1 would have refused this one
    with pytest.raises(RateLimitedError, match="this key"):
        limiter.check(operator)
    assert limiter.bucket_count == 1  # no bucket for a tenant it does not have
    limiter.check(key("key_a"))  # tenants' buckets are untouched by the operator
