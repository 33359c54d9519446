"""``/api/v1/keys``: a tenant admin lists, creates, revokes and rotates its keys.

Secrets are write-only (shown by create and rotate, never listed; the hash never leaves
the database), a revoked key is refused by the very next request (there is no cache of
keys), and one tenant's key can neither see nor touch another tenant's keys (404)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, make_tenant
from runkernel.adapters.db.tenancy import SqlTenantRepository
from runkernel.bootstrap import Kernel
from runkernel.domain.records import Principal, Role
from runkernel.errors import ConflictError
from runkernel.services.tenancy import hash_key
from support.governance_api import api, bearer
from support.workers import rows

KEY_FIELDS = {"id", "prefix", "role", "created_at", "revoked_at"}


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with api(kernel) as test_client:
        yield test_client


def call(client: TestClient, api_key: str, method: str, path: str, **body: Any) -> Any:
    return client.request(
        method, f"/api/v1/keys{path}", headers=bearer(api_key), json=body if body else None
    )


def works(client: TestClient, api_key: str) -> int:
    return client.get("/api/v1/agents", headers=bearer(api_key)).status_code


def test_listing_shows_every_key_without_secret_or_hash(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    made = call(client, tenant.api_key, "POST", "", role="user")
    assert made.status_code == 201, made.text
    body = made.json()
    user_key = body["api_key"]
    assert set(body["key"]) == KEY_FIELDS and body["key"]["role"] == "user"
    assert user_key.startswith(body["key"]["prefix"]) and works(client, user_key) == 200

    listed = call(client, tenant.api_key, "GET", "")
    assert listed.status_code == 200
    keys = listed.json()["keys"]
    assert [k["id"] for k in keys] == [tenant.principal.key_id, body["key"]["id"]]
    assert [(k["role"], k["revoked_at"]) for k in keys] == [("admin", None), ("user", None)]
    assert all(set(k) == KEY_FIELDS for k in keys)
    for secret in (tenant.api_key, user_key):
        assert secret not in listed.text and hash_key(secret) not in listed.text
        assert hash_key(secret) not in made.text
    stored = rows(kernel, "SELECT key_hash FROM api_keys")
    assert {r.key_hash for r in stored} == {hash_key(tenant.api_key), hash_key(user_key)}


def test_a_revoked_key_is_refused_by_the_next_request(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    victim = call(client, tenant.api_key, "POST", "", role="user").json()
    assert [works(client, victim["api_key"]) for _ in range(3)] == [200, 200, 200]

    revoked = call(client, tenant.api_key, "POST", f"/{victim['key']['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["id"] == victim["key"]["id"] and revoked.json()["revoked_at"]
    refused = client.get("/api/v1/agents", headers=bearer(victim["api_key"]))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
    listed = {k["id"]: k for k in call(client, tenant.api_key, "GET", "").json()["keys"]}
    assert listed[victim["key"]["id"]]["revoked_at"] == revoked.json()["revoked_at"]

    again = call(client, tenant.api_key, "POST", f"/{victim['key']['id']}/revoke")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "key_revoked")
    rotate = call(client, tenant.api_key, "POST", f"/{victim['key']['id']}/rotate")
    assert (rotate.status_code, rotate.json()["error"]["code"]) == (409, "key_revoked")


def test_an_operator_revoke_reaches_a_running_api_at_once(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    user_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.USER)
    assert works(client, user_key) == 200
    key_id = kernel.tenancy.authenticate(user_key).key_id
    kernel.tenancy.revoke(key_id)  # what `runkernel keys revoke` does, outside the API
    assert works(client, user_key) == 401


def test_rotation_gives_a_new_secret_of_the_same_role_and_revokes_the_old_at_once(
    client: TestClient, tenant: TenantContext
) -> None:
    old = call(client, tenant.api_key, "POST", "", role="user").json()
    rotated = call(client, tenant.api_key, "POST", f"/{old['key']['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    assert body["revoked"]["id"] == old["key"]["id"] and body["revoked"]["revoked_at"]
    assert body["key"]["id"] != old["key"]["id"] and body["key"]["role"] == "user"
    assert body["api_key"] != old["api_key"]
    assert body["api_key"].startswith(body["key"]["prefix"])
    assert works(client, old["api_key"]) == 401  # no grace period
    assert works(client, body["api_key"]) == 200


def test_an_admin_key_may_rotate_itself(client: TestClient, tenant: TenantContext) -> None:
    rotated = call(client, tenant.api_key, "POST", f"/{tenant.principal.key_id}/rotate")
    assert rotated.status_code == 201
    new_key = rotated.json()["api_key"]
    assert works(client, tenant.api_key) == 401
    assert works(client, new_key) == 200
    assert rotated.json()["key"]["role"] == "admin"


def test_the_last_admin_key_cannot_be_revoked(client: TestClient, tenant: TenantContext) -> None:
    own = f"/{tenant.principal.key_id}/revoke"
    refused = call(client, tenant.api_key, "POST", own)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "last_admin_key")
    assert works(client, tenant.api_key) == 200

    # A user key does not count: it could not make an admin key again.
    call(client, tenant.api_key, "POST", "", role="user")
    assert call(client, tenant.api_key, "POST", own).status_code == 409
    second = call(client, tenant.api_key, "POST", "", role="admin").json()
    assert call(client, tenant.api_key, "POST", own).status_code == 200
    assert works(client, tenant.api_key) == 401
    assert works(client, second["api_key"]) == 200


def test_another_tenants_keys_are_not_found_and_stay_untouched(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    victim_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.ADMIN)
    victim_id = kernel.tenancy.authenticate(victim_key).key_id
    intruder = make_tenant(kernel)

    listed = call(client, intruder.api_key, "GET", "").json()["keys"]
    assert [k["id"] for k in listed] == [intruder.principal.key_id]
    for move in ("revoke", "rotate"):
        answer = call(client, intruder.api_key, "POST", f"/{victim_id}/{move}")
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")
    assert works(client, victim_key) == 200
    assert [k.revoked for k in kernel.tenancy.keys_of(tenant.principal.tenant_id)] == [
        False,
        False,
    ]


@pytest.mark.parametrize("key_id", ["key_nope", "bad%00id", "x" * 65])
def test_an_unknown_or_malformed_key_id_is_404(
    client: TestClient, tenant: TenantContext, key_id: str
) -> None:
    for move in ("revoke", "rotate"):
        answer = call(client, tenant.api_key, "POST", f"/{key_id}/{move}")
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("body", [{"role": "operator"}, {"role": 1}, {"role": "admin", "x": 1}])
def test_a_bad_create_body_is_422(client: TestClient, tenant: TenantContext, body: Any) -> None:
    answer = call(client, tenant.api_key, "POST", "", **body)
    assert answer.status_code == 422
    assert len(call(client, tenant.api_key, "GET", "").json()["keys"]) == 1


def test_two_admins_revoking_each_other_at_once_leave_one_admin_key(
    kernel: Kernel, tenant: TenantContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    second_key = kernel.tenancy.create_api_key(tenant.principal.tenant_id, Role.ADMIN)
    second = kernel.tenancy.authenticate(second_key)
    first = tenant.principal
    start = threading.Barrier(2)
    outcomes: list[str] = []
    # Each revoke counts the tenant's admin keys, then waits (up to 1 s) for the other to
    # have counted too: without the tenant lock both count two and both revoke; with it
    # the second waits for the first to commit, and the wait here just times out.
    counted = threading.Barrier(2)
    read_keys = SqlTenantRepository.keys

    def keys_then_wait(self: SqlTenantRepository, tenant_id: str) -> list[Any]:
        found = read_keys(self, tenant_id)
        # A timeout means the other revoke is held at the lock: the point of the test.
        with contextlib.suppress(threading.BrokenBarrierError):
            counted.wait(timeout=1)
        return found

    monkeypatch.setattr(SqlTenantRepository, "keys", keys_then_wait)

    def revoke(by: Principal, target: str) -> None:
        start.wait()
        try:
            kernel.tenancy.revoke_key(by, target)
            outcomes.append("revoked")
        except ConflictError as exc:
            outcomes.append(exc.code)

    threads = [
        threading.Thread(target=revoke, args=(first, second.key_id)),
        threading.Thread(target=revoke, args=(second, first.key_id)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["last_admin_key", "revoked"]
    keys = kernel.tenancy.keys_of(tenant.principal.tenant_id)
    assert [k.revoked for k in keys].count(False) == 1
