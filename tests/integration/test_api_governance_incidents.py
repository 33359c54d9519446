"""``/api/v1/incidents`` end to end: a failed run's incident reads back and filters, the
ACTIVE → ACKED → RESOLVED lifecycle with 409 for illegal moves, ``incident.resolved`` in
the outbox (published only after commit), and the tenant wall (another tenant's id is 404)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import ECHO_PLAN, TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain import incidents as incidents_domain
from runkernel.domain.events import Event
from runkernel.domain.incidents import Incident
from support.governance_api import (
    TINY_TOKEN_BUDGET,
    add_stale_incident,
    api,
    bearer,
    finish,
    submit,
)
from support.workers import rows


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with api(kernel) as test_client:
        yield test_client


def queued_run(client: TestClient, tenant: TenantContext) -> str:
    return submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN)


def incident_of(kernel: Kernel, client: TestClient, tenant: TenantContext) -> str:
    return add_stale_incident(kernel, tenant.principal.tenant_id, queued_run(client, tenant))


def post(client: TestClient, tenant: TenantContext, path: str) -> Any:
    return client.post(path, headers=bearer(tenant.api_key))


def test_a_failed_run_gets_an_incident_that_lists_filters_and_reads_back(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    failed = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN, budget=TINY_TOKEN_BUDGET)
    succeeded = submit(client, tenant.api_key, tenant.agent.id, ECHO_PLAN)
    finish(kernel, client, tenant.api_key, [failed, succeeded])
    headers = bearer(tenant.api_key)

    def listed(**params: str) -> list[dict[str, Any]]:
        response = client.get("/api/v1/incidents", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return list(response.json()["incidents"])

    everything = listed()
    assert [(i["run_id"], i["category"], i["status"]) for i in everything] == [
        (failed, "BUDGET_EXCEEDED", "ACTIVE")
    ]
    assert everything[0]["error_code"] == "budget_exceeded"
    assert listed(run_id=succeeded) == []  # a successful run needs no incident
    assert listed(run_id=failed) == everything
    assert listed(status="ACTIVE") == everything and listed(status="RESOLVED") == []
    assert listed(category="STALE_RUN") == []

    one = client.get(f"/api/v1/incidents/{everything[0]['id']}", headers=headers)
    assert one.status_code == 200 and one.json() == everything[0]


def test_acknowledge_then_resolve_and_every_illegal_move_is_409(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    incident_id = incident_of(kernel, client, tenant)
    base = f"/api/v1/incidents/{incident_id}"

    acked = post(client, tenant, f"{base}/acknowledge")
    assert acked.status_code == 200
    assert (acked.json()["status"], acked.json()["resolved_at"]) == ("ACKED", None)
    again = post(client, tenant, f"{base}/acknowledge")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "incident_not_active")

    resolved = post(client, tenant, f"{base}/resolve")
    assert resolved.status_code == 200
    body = resolved.json()
    assert body["status"] == "RESOLVED" and body["resolved_at"] is not None
    for move in ("resolve", "acknowledge"):
        refused = post(client, tenant, f"{base}/{move}")
        assert refused.status_code == 409, move
    assert post(client, tenant, f"{base}/resolve").json()["error"]["code"] == (
        "incident_already_resolved"
    )
    stored = client.get(base, headers=bearer(tenant.api_key)).json()
    assert stored["status"] == "RESOLVED"


def test_resolving_writes_incident_resolved_to_the_outbox_and_the_relay_publishes_it(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    incident_id = incident_of(kernel, client, tenant)
    received: list[Event] = []
    kernel.bus.subscribe("incident.*", received.append)

    assert post(client, tenant, f"/api/v1/incidents/{incident_id}/acknowledge").status_code == 200
    assert rows(kernel, "SELECT id FROM outbox WHERE topic = 'incident.resolved'") == []

    assert post(client, tenant, f"/api/v1/incidents/{incident_id}/resolve").status_code == 200
    stored = rows(kernel, "SELECT tenant_id, payload FROM outbox WHERE topic = 'incident.resolved'")
    assert len(stored) == 1
    assert stored[0].tenant_id == tenant.principal.tenant_id
    payload = stored[0].payload  # raw SQL: JSON text on SQLite, decoded on PostgreSQL
    assert (json.loads(payload) if isinstance(payload, str) else payload)["incident_id"] == (
        incident_id
    )

    while kernel.relay.relay_once():
        pass
    assert [(e.topic, e.payload["incident_id"]) for e in received] == [
        ("incident.resolved", incident_id)
    ]


def test_a_refused_resolve_writes_no_event(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    incident_id = incident_of(kernel, client, tenant)
    post(client, tenant, f"/api/v1/incidents/{incident_id}/resolve")
    assert post(client, tenant, f"/api/v1/incidents/{incident_id}/resolve").status_code == 409
    assert len(rows(kernel, "SELECT id FROM outbox WHERE topic = 'incident.resolved'")) == 1


def test_another_tenants_incident_is_404_and_stays_untouched(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    incident_id = incident_of(kernel, client, tenant)
    intruder = make_tenant(kernel)
    base = f"/api/v1/incidents/{incident_id}"
    answers = [
        client.get(base, headers=bearer(intruder.api_key)),
        post(client, intruder, f"{base}/acknowledge"),
        post(client, intruder, f"{base}/resolve"),
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(404, "not_found")] * 3
    listed = client.get("/api/v1/incidents", headers=bearer(intruder.api_key)).json()
    assert listed["incidents"] == []
    assert client.get(base, headers=bearer(tenant.api_key)).json()["status"] == "ACTIVE"
    assert rows(kernel, "SELECT id FROM outbox WHERE topic = 'incident.resolved'") == []


def test_pages_walk_every_incident_once_newest_first(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    made = [incident_of(kernel, client, tenant) for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/incidents", params=params, headers=bearer(tenant.api_key))
        seen += [i["id"] for i in page.json()["incidents"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/incidents", {"status": "OPEN"}, 422),
        ("/api/v1/incidents", {"category": "nope"}, 422),
        ("/api/v1/incidents", {"limit": 0}, 422),
        ("/api/v1/incidents", {"run_id": "bad id!"}, 422),
        ("/api/v1/incidents/inc_unknown", {}, 404),
        ("/api/v1/incidents/%00", {}, 404),
    ],
)
def test_bad_filters_and_unknown_ids_get_the_error_shape(
    client: TestClient, tenant: TenantContext, path: str, params: dict[str, Any], status: int
) -> None:
    response = client.get(path, params=params, headers=bearer(tenant.api_key))
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message"}


def test_incidents_need_a_key(client: TestClient) -> None:
    for response in (
        client.get("/api/v1/incidents"),
        client.post("/api/v1/incidents/inc_x/resolve"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"


def test_of_two_concurrent_resolves_exactly_one_wins(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read the incident ACTIVE before either writes. PostgreSQL only: on SQLite the
    write lock serializes the whole read-modify-write, so no such race exists."""
    kernel = build_kernel(make_settings(postgres_url))
    kernel.migrate()
    try:
        tenant = make_tenant(kernel)
        with api(kernel) as client:
            incident_id = incident_of(kernel, client, tenant)
            both_read = threading.Barrier(2)
            real_resolve = incidents_domain.resolve

            def resolve_after_both_read(incident: Incident, now_ms: int) -> Incident:
                both_read.wait(timeout=10)
                return real_resolve(incident, now_ms)

            monkeypatch.setattr(incidents_domain, "resolve", resolve_after_both_read)
            codes: list[int] = []

            def resolve() -> None:
                codes.append(
                    post(client, tenant, f"/api/v1/incidents/{incident_id}/resolve").status_code
                )

            racers = [threading.Thread(target=resolve) for _ in range(2)]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(timeout=30)
        assert sorted(codes) == [200, 409]
        assert len(rows(kernel, "SELECT id FROM outbox WHERE topic = 'incident.resolved'")) == 1
    finally:
        kernel.close()
