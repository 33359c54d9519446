"""What a run stores reads back exactly, and whatever a row holds reads back at all.

Numbers: SQLite gives a ``JSON`` column NUMERIC affinity, so a value that is a bare number
(``1000000000000000000000000000000``) was turned into the REAL ``1e+30`` on the way in;
PostgreSQL's JSONB prints ``1e+308`` as 309 digits, which read back as an int. Rows written
before today's limits (nested past what the parser or the response encoder can take,
integers too long to print, NaN) must not turn the run detail into a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantContext, auth, make_settings, make_tenant
from runkernel.adapters.skills import build_default_registry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.skills import SkillContext
from support.governance import drive

# -0.0 is not here: PostgreSQL's numeric has no negative zero, so it is stored as 0.0 on
# both databases (tests/unit/test_storable.py).
NUMBERS: list[Any] = [
    10**30,
    -(10**30),
    2**63,
    2**64 + 1,
    0.1,
    1e308,
    1.0,
    1e16,
    2.5e-7,
    5e-324,
    1.7976931348623157e308,
    12345678901234567890.5,
]


@pytest.fixture
def kernel(database_url: str) -> Iterator[Kernel]:
    settings = make_settings(database_url)
    registry = build_default_registry(settings)

    def echo(params: dict[str, Any], context: SkillContext) -> Any:
        return params["value"]

    registry.register("test.echo", echo)
    k = build_kernel(settings, skills=registry)
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def tenant(kernel: Kernel) -> TenantContext:
    return make_tenant(kernel)


def exact(value: Any) -> str:
    """The JSON text of ``value``, keys sorted: equal texts mean equal values AND types
    (``1.0`` is not ``1``, ``1e+308`` is not 309 digits)."""
    return json.dumps(value, sort_keys=True)


def submit(client: TestClient, tenant: TenantContext, body: dict[str, Any]) -> str:
    response = client.post(
        "/api/v1/runs",
        content=json.dumps({"agent_id": tenant.agent.id, **body}),
        headers={**auth(tenant), "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def get(client: TestClient, tenant: TenantContext, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant))
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def test_numbers_round_trip_exactly_through_inputs_outputs_run_output_and_metadata(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    steps = [
        {"step_id": "all", "skill": "test.echo", "params": {"value": NUMBERS}},
        *(
            # Each number alone as a step's whole output: the bare-number case.
            {
                "step_id": f"n{i}",
                "skill": "test.echo",
                "params": {"value": n},
                "output_key": f"k{i}",
            }
            for i, n in enumerate(NUMBERS)
        ),
    ]
    metadata = {"numbers": NUMBERS, "big": 10**30}
    run_id = submit(client, tenant, {"plan": {"steps": steps}, "metadata": metadata})
    assert drive(kernel, run_id) == "succeeded"

    run = get(client, tenant, run_id)
    assert exact(run["metadata"]) == exact(metadata)
    assert exact(run["steps"][0]["output"]) == exact(NUMBERS)
    for i, number in enumerate(NUMBERS):
        assert exact(run["steps"][i + 1]["output"]) == exact(number), number
    assert exact(run["output"]) == exact({f"k{i}": n for i, n in enumerate(NUMBERS)})
    stored = kernel.runs.get(tenant.principal, run_id)
    assert exact(stored.plan["steps"][0]["params"]["value"]) == exact(NUMBERS)
    assert [exact(s.input) for s in stored.steps[1:]] == [exact({"value": n}) for n in NUMBERS]


def test_a_run_whose_whole_output_is_a_30_digit_integer_reads_back_exact(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    plan = {"steps": [{"step_id": "n", "skill": "test.echo", "params": {"value": 10**30}}]}
    run_id = submit(client, tenant, {"plan": plan})
    assert drive(kernel, run_id) == "succeeded"
    response = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant))
    assert '"output":1000000000000000000000000000000,' in response.text


def _deep_text(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# name -> (JSON text as stored, what the reader says instead); PostgreSQL's JSONB cannot
# hold NaN, NUL or lone surrogates, so those rows exist only on SQLite.
OLD_ROWS: dict[str, tuple[str, str, bool]] = {
    "nested-past-the-parser": (_deep_text(5000), "nested too deeply to be read back", True),
    "nested-past-the-encoder": (_deep_text(300), "nested deeper than 64 levels", True),
    # SQLite has made this text an infinite REAL already; PostgreSQL has it as numeric.
    "integer-too-long-to-print": ("1" + "0" * 5000, "read back", True),
    "nan": ('{"x": NaN}', "NaN and Infinity", False),
    "lone-surrogate": ('{"x": "\\ud800"}', "lone surrogate", False),
    "nul": ('{"x": "a\\u0000b"}', "NUL", False),
    "not-json": ('{"x": ', "cannot be read back", False),
}


@pytest.mark.parametrize("name", sorted(OLD_ROWS))
def test_the_run_detail_reads_whatever_json_an_old_row_holds(
    kernel: Kernel, client: TestClient, tenant: TenantContext, name: str
) -> None:
    stored, reason, on_postgres = OLD_ROWS[name]
    if not kernel.db.is_sqlite and not on_postgres:
        pytest.skip("PostgreSQL's JSONB cannot hold this value, so no such row exists there")
    plan = {"steps": [{"step_id": "s", "skill": "test.echo", "params": {"value": 1}}]}
    run_id = submit(client, tenant, {"plan": plan})
    assert drive(kernel, run_id) == "succeeded"
    cast = "CAST(:v AS jsonb)" if not kernel.db.is_sqlite else ":v"
    with kernel.db.engine.begin() as conn:
        if not kernel.db.is_sqlite:
            conn.execute(text("SET LOCAL max_stack_depth = '7MB'"))
        conn.execute(
            text(f"UPDATE runs SET output = {cast}, metadata = {cast} WHERE id = :id"),
            {"v": stored, "id": run_id},
        )
        conn.execute(
            text(f"UPDATE run_steps SET output = {cast}, input = {cast} WHERE run_id = :id"),
            {"v": stored, "id": run_id},
        )

    run = get(client, tenant, run_id)

    for value in (run["output"], run["metadata"], run["steps"][0]["output"]):
        assert reason in value["omitted"], value
    assert run["status"] == "succeeded"


def test_a_queued_run_whose_stored_plan_cannot_be_read_fails_cleanly(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    plan = {"steps": [{"step_id": "s", "skill": "test.echo", "params": {"value": 1}}]}
    run_id = submit(client, tenant, {"plan": plan})
    cast = "CAST(:v AS jsonb)" if not kernel.db.is_sqlite else ":v"
    with kernel.db.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE runs SET plan = {cast} WHERE id = :id"),
            {"v": _deep_text(300), "id": run_id},
        )

    assert drive(kernel, run_id) == "failed"

    run = get(client, tenant, run_id)
    assert run["error"]["code"] == "unreadable_plan"
    assert "the stored plan cannot be read back" in run["error"]["message"]
