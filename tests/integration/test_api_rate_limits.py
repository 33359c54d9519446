"""Rate limits over HTTP: every authenticated request passes the per-key and per-tenant
token buckets in the principal dependency; over a limit the answer is 429 ``rate_limited``
with ``Retry-After`` in whole seconds (rounded up). The kernel's clock is a fake the test
moves, so refills happen without sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Role
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.cli.client import ApiClient
from runkernel.entrypoints.cli.errors import ApiError
from runkernel.entrypoints.serve import BackgroundServer
from support.governance_api import bearer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextmanager
def limited(sqlite_url: str, clock: FakeClock, **rates: float) -> Iterator[Kernel]:
    k = build_kernel(make_settings(sqlite_url, **rates), clock=clock)
    try:
        k.migrate()
        yield k
    finally:
        k.close()


def ok(client: TestClient, api_key: str) -> int:
    return client.get("/api/v1/agents", headers=bearer(api_key)).status_code


def test_a_key_gets_its_burst_then_429_with_retry_after_then_refills(
    sqlite_url: str, clock: FakeClock
) -> None:
    with limited(sqlite_url, clock, rate_limit_key_per_s=0.4, rate_limit_key_burst=3) as kernel:
        tenant = make_tenant(kernel)
        with TestClient(create_app(kernel)) as client:
            assert [ok(client, tenant.api_key) for _ in range(3)] == [200, 200, 200]
            refused = client.get("/api/v1/runs", headers=bearer(tenant.api_key))
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert refused.headers["Retry-After"] == "3"  # 1 token at 0.4/s: 2.5 s, rounded up
            clock.now += 2000
            assert ok(client, tenant.api_key) == 429  # 0.8 of a token: not yet
            clock.now += 500
            assert ok(client, tenant.api_key) == 200
            assert ok(client, tenant.api_key) == 429


def test_the_tenant_limit_spans_its_keys_and_spares_other_tenants(
    sqlite_url: str, clock: FakeClock
) -> None:
    with limited(sqlite_url, clock, rate_limit_tenant_per_s=1, rate_limit_tenant_burst=4) as kernel:
        tenant = make_tenant(kernel)
        other_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
        neighbour = make_tenant(kernel)
        with TestClient(create_app(kernel)) as client:
            answers = [ok(client, k) for k in [tenant.api_key, other_key] * 3]
            assert answers == [200, 200, 200, 200, 429, 429]
            refused = client.get("/api/v1/agents", headers=bearer(other_key))
            assert refused.headers["Retry-After"] == "1"
            assert "tenant" in refused.json()["error"]["message"]
            assert ok(client, neighbour.api_key) == 200
            clock.now += 1000
            assert ok(client, other_key) == 200


def test_zero_means_unlimited(sqlite_url: str, clock: FakeClock) -> None:
    with limited(sqlite_url, clock, rate_limit_key_per_s=0, rate_limit_tenant_per_s=0) as kernel:
        tenant = make_tenant(kernel)
        with TestClient(create_app(kernel)) as client:
            assert {ok(client, tenant.api_key) for _ in range(300)} == {200}


def test_failed_authentication_is_401_and_grows_no_bucket(
    sqlite_url: str, clock: FakeClock
) -> None:
    with limited(sqlite_url, clock, rate_limit_key_per_s=1, rate_limit_key_burst=1) as kernel:
        tenant: TenantContext = make_tenant(kernel)
        app = create_app(kernel)
        with TestClient(app) as client:
            answers = {ok(client, f"rk_made_up_{i}") for i in range(200)}
            assert answers == {401}
            assert app.state.rate_limiter.bucket_count == 0
            assert ok(client, tenant.api_key) == 200
            assert ok(client, tenant.api_key) == 429
            assert app.state.rate_limiter.bucket_count == 1  # the key's (tenant limit off)


def test_the_documented_defaults_are_on_outside_tests() -> None:
    """make_settings turns the limits off for other tests; the product defaults limit."""
    from runkernel.config import Settings

    defaults = Settings.model_fields
    assert defaults["rate_limit_key_per_s"].default > 0
    assert defaults["rate_limit_tenant_per_s"].default > 0


def test_the_cli_client_waits_out_a_429_as_told(sqlite_url: str, clock: FakeClock) -> None:
    """The tenant commands (and the demo) share ApiClient: it sleeps Retry-After seconds
    and sends again, instead of failing on a limit it would be under a moment later."""
    with limited(sqlite_url, clock, rate_limit_key_per_s=0.5, rate_limit_key_burst=1) as kernel:
        tenant = make_tenant(kernel)
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            clock.sleep(seconds)  # the server's clock: its bucket refills meanwhile

        with BackgroundServer(kernel) as server:
            with ApiClient(server.url, tenant.api_key, sleep=sleep) as api_client:
                assert [a["id"] for a in api_client.list_agents()] == [tenant.agent.id]
                assert [a["id"] for a in api_client.list_agents()] == [tenant.agent.id]
            assert slept == [2.0]  # one token at 0.5/s

            impatient = ApiClient(server.url, tenant.api_key, sleep=lambda s: None)
            with impatient, pytest.raises(ApiError) as refused:  # never refilled: gives up
                for _ in range(10):
                    impatient.list_agents()
            assert (refused.value.status, refused.value.code) == (429, "rate_limited")
