"""Nothing a skill raises or returns can crash the attempt that runs it: each kind of
failure is a failed step with its reason, the run is final at once (attempt 1, not left to
lease expiry), and the run reads back over the API — on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantContext, auth, make_settings, make_tenant
from runkernel.adapters.skills import SkillRegistry, build_default_registry
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.skills import SkillContext, SkillResult, Usage
from runkernel.entrypoints.worker import WorkerPool
from runkernel.errors import SkillError
from support.governance import drive
from support.workers import wait_until

OUTPUT_LIMIT = 4096
INPUT_LIMIT = 8192


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _raise(exc: BaseException) -> Callable[[], Any]:
    def fail() -> Any:
        raise exc

    return fail


def _cycle() -> Any:
    loop: list[Any] = []
    loop.append(loop)
    return loop


# kind -> (what the skill does, a fragment of the step's error)
KINDS: dict[str, tuple[Callable[[], Any], str]] = {
    "raises-value-error": (_raise(ValueError("bad value")), "ValueError: bad value"),
    "raises-recursion-error": (_raise(RecursionError("too deep")), "RecursionError: too deep"),
    "raises-type-error": (_raise(TypeError("no such type")), "TypeError: no such type"),
    "raises-unicode-error": (
        _raise(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")),
        "UnicodeDecodeError",
    ),
    "raises-key-error": (_raise(KeyError("k")), "KeyError: 'k'"),
    "raises-skill-error": (_raise(SkillError("quota gone")), "quota gone"),
    "raises-with-nul-and-surrogate": (
        _raise(SkillError("bad \x00 byte \ud800")),
        "bad \\x00 byte \\ud800",
    ),
    "raises-a-huge-message": (_raise(SkillError("m" * 1_000_000)), "mmmm…"),
    "reports-an-error": (lambda: SkillResult(error="upstream said no"), "upstream said no"),
    "returns-bytes": (lambda: {"raw": b"\x00\x01"}, "output.raw: a bytes is not a JSON value"),
    "returns-a-set": (lambda: {1, 2}, "output: a set is not a JSON value"),
    "returns-a-datetime": (
        lambda: [datetime(2026, 1, 1, tzinfo=UTC)],
        "output[0]: a datetime is not a JSON value",
    ),
    "returns-an-object": (lambda: {"o": object()}, "output.o: a object is not a JSON value"),
    "returns-nan": (lambda: {"x": math.nan}, "NaN and Infinity are not JSON numbers"),
    "returns-infinity": (lambda: [math.inf], "NaN and Infinity are not JSON numbers"),
    "returns-nul": (lambda: {"t": "a\x00b"}, "must not contain NUL"),
    "returns-a-lone-surrogate": (lambda: {"t": "\udc80"}, "lone surrogate"),
    "returns-a-surrogate-key": (lambda: {"\ud800": 1}, "lone surrogate"),
    "returns-an-int-key": (lambda: {1: "a"}, "keys must be strings, not int"),
    "returns-deep-nesting": (lambda: nested(200), "nested deeper than 64 levels"),
    "returns-very-deep-nesting": (lambda: nested(100_000), "nested deeper than 64 levels"),
    "returns-a-cycle": (_cycle, "nested deeper than 64 levels"),
    "returns-a-5000-digit-int": (lambda: 10**5000, "integers are limited to 4300 digits"),
    "returns-too-much": (
        lambda: "x" * 10_000,
        f"output is over the limit of {OUTPUT_LIMIT} bytes "
        "(set by RUNKERNEL_MAX_STEP_OUTPUT_BYTES)",
    ),
    "returns-bad-usage": (lambda: SkillResult(usage="many"), "usage that is not a Usage"),  # type: ignore[arg-type]
    "returns-negative-cost": (lambda: SkillResult(cost_micros=-1), "cost_micros -1"),
    "returns-overflowing-tokens": (
        lambda: SkillResult(usage=Usage(2**63, 0)),
        f"usage.input_tokens {2**63}",
    ),
    "returns-error-bytes": (lambda: SkillResult(error=b"x"), "an error that is not text"),  # type: ignore[arg-type]
}


def failing_registry(kernel_settings: Any) -> SkillRegistry:
    registry = build_default_registry(kernel_settings)

    def fail(params: dict[str, Any], context: SkillContext) -> Any:
        return KINDS[params["kind"]][0]()

    def echo(params: dict[str, Any], context: SkillContext) -> Any:
        return params.get("value")

    registry.register("test.fail", fail)
    registry.register("test.echo", echo)
    return registry


@pytest.fixture
def kernel(database_url: str) -> Iterator[Kernel]:
    # A lease far longer than any wait here: a crashed attempt would show as a timeout or
    # as attempt 2, never be rescued by a reclaim within the test.
    settings = make_settings(
        database_url,
        lease_s=120.0,
        max_step_output_bytes=OUTPUT_LIMIT,
        max_step_input_bytes=INPUT_LIMIT,
    )
    k = build_kernel(settings, skills=failing_registry(settings))
    k.migrate()
    yield k
    k.close()


@pytest.fixture
def tenant(kernel: Kernel) -> TenantContext:
    return make_tenant(kernel)


def submit(client: TestClient, tenant: TenantContext, steps: list[dict[str, Any]]) -> str:
    response = client.post(
        "/api/v1/runs",
        json={"agent_id": tenant.agent.id, "plan": {"steps": steps}},
        headers=auth(tenant),
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def run_detail(client: TestClient, tenant: TenantContext, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}", headers=auth(tenant))
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_skill_failure_is_a_failed_step_and_a_final_run(
    kernel: Kernel, client: TestClient, tenant: TenantContext, kind: str
) -> None:
    run_id = submit(
        client,
        tenant,
        [
            {"step_id": "f", "skill": "test.fail", "params": {"kind": kind}},
            {"step_id": "after", "skill": "test.echo", "params": {"value": 1}},
        ],
    )

    outcome = drive(kernel, run_id)  # raises if the attempt crashed

    fragment = KINDS[kind][1]
    run = run_detail(client, tenant, run_id)
    assert outcome == "failed"
    assert (run["status"], run["phase"], run["attempt"]) == ("failed", "FAILED", 1)
    assert run["error"]["code"] == "step_failed"
    assert fragment in run["error"]["message"]
    [step] = run["steps"]
    assert step["status"] == "failed" and fragment in step["error"]
    assert len(step["error"]) <= 4000
    if step["output"] is not None:  # what could not be stored is a marker saying why
        assert fragment in step["output"]["omitted"]


def test_an_input_copying_a_large_output_many_times_fails_at_the_input_bound(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    """The issue's run grew to 90 MB in two seconds by templates copying one output; here
    the copies stop at RUNKERNEL_MAX_STEP_INPUT_BYTES and the skill is never called."""
    copies = " ".join(["{{steps.big.output}}"] * 2000)
    run_id = submit(
        client,
        tenant,
        [
            {"step_id": "big", "skill": "test.echo", "params": {"value": "y" * 3000}},
            {"step_id": "copy", "skill": "test.echo", "params": {"value": copies}},
        ],
    )
    assert drive(kernel, run_id) == "failed"

    run = run_detail(client, tenant, run_id)
    big, copy = run["steps"]
    message = (
        f"input is over the limit of {INPUT_LIMIT} bytes (set by RUNKERNEL_MAX_STEP_INPUT_BYTES)"
    )
    assert big["status"] == "succeeded" and big["output"] == "y" * 3000
    assert (copy["status"], copy["error"], copy["output"], copy["tries"]) == (
        "failed",
        message,
        None,
        0,
    )
    assert message in run["error"]["message"]


def test_whole_template_copies_are_measured_as_stored(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    params = {"value": {f"k{i}": "{{steps.big.output}}" for i in range(3)}}
    run_id = submit(
        client,
        tenant,
        [
            {"step_id": "big", "skill": "test.echo", "params": {"value": "y" * 3000}},
            {"step_id": "copy", "skill": "test.echo", "params": params},
        ],
    )
    assert drive(kernel, run_id) == "failed"
    copy = run_detail(client, tenant, run_id)["steps"][1]
    assert copy["error"].startswith(f"input is over the limit of {INPUT_LIMIT} bytes")


def test_outputs_growing_past_the_nesting_limit_fail_the_step_and_the_run_reads_back(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    """Issue point 5: each step wraps the previous output one level deeper. The step whose
    input would nest past the limit fails cleanly, and GET on the run answers 200."""
    steps: list[dict[str, Any]] = [
        {"step_id": "s0", "skill": "test.echo", "params": {"value": nested(50)}}
    ]
    for i in range(1, 30):
        steps.append(
            {
                "step_id": f"s{i}",
                "skill": "test.echo",
                "params": {"value": {"wrap": f"{{{{steps.s{i - 1}.output}}}}"}},
            }
        )
    run_id = submit(client, tenant, steps)
    assert drive(kernel, run_id) == "failed"

    run = run_detail(client, tenant, run_id)
    last = run["steps"][-1]
    assert [s["status"] for s in run["steps"][:-1]] == ["succeeded"] * (len(run["steps"]) - 1)
    assert last["status"] == "failed"
    assert "input cannot be stored" in last["error"] and "nested deeper than 64" in last["error"]
    assert run["status"] == "failed" and run["attempt"] == 1


def test_a_run_output_past_the_limits_fails_the_run_with_a_marker(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    """Each keyed output fits; together they are over the output limit."""
    steps = [
        {
            "step_id": f"s{i}",
            "skill": "test.echo",
            "params": {"value": "z" * 3000},
            "output_key": f"k{i}",
        }
        for i in range(3)
    ]
    run_id = submit(client, tenant, steps)
    assert drive(kernel, run_id) == "failed"

    run = run_detail(client, tenant, run_id)
    reason = (
        f"run output is over the limit of {OUTPUT_LIMIT} bytes "
        "(set by RUNKERNEL_MAX_STEP_OUTPUT_BYTES)"
    )
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 3
    assert run["error"] == {"code": "unstorable_output", "message": reason}
    assert run["output"] == {"omitted": reason}


def test_a_failing_skill_in_a_real_worker_pool_frees_its_slot_and_ends_the_run(
    kernel: Kernel, client: TestClient, tenant: TenantContext
) -> None:
    kinds = ["raises-recursion-error", "returns-very-deep-nesting", "returns-bytes"]
    run_ids = [
        submit(client, tenant, [{"step_id": "f", "skill": "test.fail", "params": {"kind": k}}])
        for k in kinds
    ]
    pool = WorkerPool(kernel, concurrency=1).start()
    try:

        def all_final() -> bool:
            runs = [run_detail(client, tenant, r) for r in run_ids]
            return all(r["phase"] == "FAILED" for r in runs)

        wait_until(all_final, timeout=30, what="every run to fail")
        assert pool.inflight == 0
    finally:
        pool.stop(drain_timeout_s=5)
    for run_id, kind in zip(run_ids, kinds, strict=True):
        run = run_detail(client, tenant, run_id)
        assert run["attempt"] == 1 and KINDS[kind][1] in run["error"]["message"]


@pytest.mark.parametrize(
    ("step", "fragment"),
    [
        (
            {"skill": "http.request", "params": {"method": "GET", "url": "http://[::1"}},
            "step 'a': http.request: url 'http://[::1' cannot be parsed: Invalid IPv6 URL",
        ),
        (
            {
                "skill": "json.transform",
                "params": {"data": {}, "expression": "[" * 3000 + "a" + "]" * 3000},
            },
            "step 'a': json.transform: params cannot be checked: RecursionError",
        ),
    ],
    ids=["malformed-url", "deep-expression"],
)
def test_what_a_validator_trips_over_is_a_422_at_submission(
    client: TestClient, tenant: TenantContext, step: dict[str, Any], fragment: str
) -> None:
    response = client.post(
        "/api/v1/runs",
        json={"agent_id": tenant.agent.id, "plan": {"steps": [{"step_id": "a", **step}]}},
        headers=auth(tenant),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_plan"
    assert fragment in response.json()["error"]["message"]
