"""Budgets hold under concurrency (DESIGN invariant 7): every step reserves its worst-case
cost against the agent's budget in the database before its skill is called, so however
many runs of one agent execute at once, they never spend past the budget; a run whose
step does not fit ends failed_policy with a BUDGET_EXCEEDED incident, its skill never
called, and nothing stays reserved once the runs are final or their workers are gone."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import TenantContext, auth, make_settings, make_tenant
from runkernel.adapters.skills import SkillRegistry
from runkernel.adapters.skills.egress import Egress
from runkernel.adapters.skills.llm import ChatSkill
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Claim
from runkernel.domain.runs import Phase, RunStatus, path
from runkernel.domain.skills import SkillContext
from runkernel.entrypoints.api import create_app
from runkernel.entrypoints.worker import WorkerPool
from runkernel.errors import LeaseLostError
from support.workers import rows, run_row

RUNS = 64
# Ten one-letter words, answered in full: echo-1 charges 10 input tokens (1 micro each) and
# 10 output tokens (2 micros each), and the reservation (words vs chars/4, max_tokens of
# output) is exactly that, so the budget admits exactly FITTING runs.
PROMPT = "a b c d e f g h i j"
RUN_COST = 30
FITTING = 20
BUDGET_USD = FITTING * RUN_COST / 1_000_000
PLAN = {
    "steps": [
        {
            "step_id": "ask",
            "skill": "llm.chat",
            "params": {
                "model": "echo-1",
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 10,
            },
        }
    ]
}
LEASE_MS = 1_000
# Under cap, what is left once FITTING runs reserved in full (15 micros) pays for the
# prompt (10) and 2 output tokens (4): one run answers capped, the rest terminate.
CAP_FLOOR = 2
CAP_LEFT = 15


class CountingChat:
    """``llm.chat`` as built in, counting its calls per run."""

    def __init__(self, chat: ChatSkill) -> None:
        self._chat = chat
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def __call__(self, params: dict[str, Any], context: SkillContext) -> Any:
        with self._lock:
            self.calls[context.run_id] += 1
        return self._chat(params, context)


@pytest.fixture
def counted(database_url: str) -> Iterator[tuple[Kernel, CountingChat]]:
    settings = make_settings(database_url, lease_s=30.0, budget_cap_min_tokens=CAP_FLOOR)
    chat = ChatSkill(settings, Egress.from_settings(settings))
    counting = CountingChat(chat)
    registry = SkillRegistry()
    registry.register(
        "llm.chat", counting, validate=chat.validate, estimate=chat.estimate, lower=chat.lower
    )
    kernel = build_kernel(settings, skills=registry)
    kernel.migrate()
    yield kernel, counting
    kernel.close()


def _wait_final(kernel: Kernel, tenant: TenantContext, run_ids: list[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(kernel.runs.get(tenant.principal, rid).finished_at_ms for rid in run_ids):
            return
        time.sleep(0.1)
    raise AssertionError("runs did not finish")


def _agent_row(kernel: Kernel, agent_id: str) -> Any:
    return rows(kernel, "SELECT * FROM agents WHERE id = :id", id=agent_id)[0]


def _run_concurrently(kernel: Kernel, counting: CountingChat, pools: int) -> None:
    tenant = make_tenant(kernel, budget_usd=BUDGET_USD)
    submit = kernel.runs.submit
    run_ids = [
        submit(tenant.principal, agent_id=tenant.agent.id, plan=PLAN).run.id for _ in range(RUNS)
    ]
    workers = [WorkerPool(kernel, concurrency=8).start() for _ in range(pools)]
    try:
        _wait_final(kernel, tenant, run_ids)
    finally:
        for worker in workers:
            worker.stop()
    runs = [kernel.runs.get(tenant.principal, rid) for rid in run_ids]
    done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    refused = [r for r in runs if r.status is not RunStatus.SUCCEEDED]
    agent = _agent_row(kernel, tenant.agent.id)

    assert agent.spent_micros <= agent.budget_micros
    assert len(done) == FITTING and all(r.cost_micros == RUN_COST for r in done)
    assert agent.spent_micros == sum(r.cost_micros for r in runs)
    # Refused before the call: no skill call, no step, no cost.
    assert all(counting.calls[r.id] == 1 for r in done)
    assert sum(counting.calls.values()) == FITTING
    for r in refused:
        assert (r.status, r.error_code, r.cost_micros, r.steps) == (
            RunStatus.FAILED_POLICY,
            "budget_exceeded",
            0,
            (),
        ), r
    incidents = rows(
        kernel,
        "SELECT run_id, category FROM incidents WHERE tenant_id = :t",
        t=tenant.principal.tenant_id,
    )
    assert sorted((i.run_id, i.category) for i in incidents) == sorted(
        (r.id, "BUDGET_EXCEEDED") for r in refused
    )
    # Nothing stays held once every run is final.
    assert agent.reserved_micros == 0
    assert [run_row(kernel, rid).reserved_micros for rid in run_ids] == [0] * RUNS
    shown = kernel.tenancy.get_agent(tenant.principal, tenant.agent.id)
    assert shown is not None and shown.reserved_micros == 0


def test_concurrent_runs_of_one_agent_never_spend_past_its_budget(
    counted: tuple[Kernel, CountingChat],
) -> None:
    _run_concurrently(*counted, pools=1)


@pytest.mark.postgres
def test_two_workers_share_one_agent_budget(postgres_url: str) -> None:
    settings = make_settings(postgres_url, lease_s=30.0)
    chat = ChatSkill(settings, Egress.from_settings(settings))
    counting = CountingChat(chat)
    registry = SkillRegistry()
    registry.register(
        "llm.chat", counting, validate=chat.validate, estimate=chat.estimate, lower=chat.lower
    )
    kernel = build_kernel(settings, skills=registry)
    kernel.migrate()
    try:
        _run_concurrently(kernel, counting, pools=2)
    finally:
        kernel.close()


def _claim(kernel: Kernel, worker: str, now_ms: int) -> Claim:
    with kernel.uow() as uow:
        claimed = uow.runs.claim(worker, 10, now_ms, LEASE_MS)
        uow.commit()
    assert len(claimed) == 1, claimed
    return Claim.of(claimed[0], worker)


def _reserved(kernel: Kernel, tenant: TenantContext, run_id: str) -> tuple[int, int]:
    return _agent_row(kernel, tenant.agent.id).reserved_micros, run_row(
        kernel, run_id
    ).reserved_micros


def test_a_takeover_releases_the_dead_workers_reservation(
    counted: tuple[Kernel, CountingChat],
) -> None:
    kernel, _ = counted
    tenant = make_tenant(kernel, budget_usd=BUDGET_USD)
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=PLAN).run.id
    t0 = kernel.clock.now_ms()
    dead = _claim(kernel, "worker-A", t0)
    with kernel.uow() as uow:
        assert uow.runs.reserve(dead, 500)
        uow.commit()
    assert _reserved(kernel, tenant, run_id) == (500, 500)
    with TestClient(create_app(kernel)) as client:
        shown = client.get(f"/api/v1/agents/{tenant.agent.id}", headers=auth(tenant)).json()
        listed = client.get("/api/v1/agents", headers=auth(tenant)).json()["agents"]
    assert (shown["budget_usd"], shown["spent_usd"], shown["reserved_usd"]) == (0.0006, 0, 0.0005)
    assert [a["reserved_usd"] for a in listed] == [0.0005]
    with kernel.uow() as uow:  # what is left of the budget (600) cannot take 101 more
        assert not uow.runs.reserve(dead, 101)
    assert _reserved(kernel, tenant, run_id) == (500, 500)

    alive = _claim(kernel, "worker-B", t0 + LEASE_MS + 1)
    assert alive.epoch == dead.epoch + 1
    assert _reserved(kernel, tenant, run_id) == (0, 0)
    # The new holder may use the whole budget again; the dead one can hold nothing.
    with kernel.uow() as uow:
        assert uow.runs.reserve(alive, 600)
        uow.commit()
    with kernel.uow() as uow, pytest.raises(LeaseLostError):
        uow.runs.reserve(dead, 1)
    # Final: the reservation is let go of with the finish.
    chain = path(
        (Phase.EXECUTING, RunStatus.RUNNING),
        (Phase.FAILED, RunStatus.FAILED, "test"),
        at_ms=t0 + LEASE_MS + 2,
    )
    with kernel.uow() as uow:
        uow.runs.finish(alive, chain, error_code="test", error_message="test")
        uow.commit()
    assert _reserved(kernel, tenant, run_id) == (0, 0)
    agent = _agent_row(kernel, tenant.agent.id)
    assert agent.spent_micros == 0


def _submit_all(kernel: Kernel, tenant: TenantContext) -> list[str]:
    submit = kernel.runs.submit
    return [
        submit(tenant.principal, agent_id=tenant.agent.id, plan=PLAN).run.id for _ in range(RUNS)
    ]


def _wait_settled(kernel: Kernel, tenant: TenantContext, run_ids: list[str]) -> None:
    """Until every run is final or paused (a paused run holds no worker)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = [kernel.runs.get(tenant.principal, rid) for rid in run_ids]
        if all(r.finished_at_ms or r.status is RunStatus.PAUSED for r in runs):
            return
        time.sleep(0.1)
    raise AssertionError("runs did not settle")


def _assert_nothing_held(kernel: Kernel, tenant: TenantContext, run_ids: list[str]) -> Any:
    agent = _agent_row(kernel, tenant.agent.id)
    runs = [run_row(kernel, rid) for rid in run_ids]
    assert agent.spent_micros <= agent.budget_micros
    assert agent.reserved_micros == 0
    assert [r.reserved_micros for r in runs] == [0] * len(run_ids)
    final = [r for r in runs if r.finished_at_ms is not None]
    assert agent.spent_micros == sum(r.cost_micros for r in final)
    return agent


def test_on_budget_pause_holds_the_rest_until_the_budget_is_raised_and_they_are_resumed(
    counted: tuple[Kernel, CountingChat],
) -> None:
    kernel, counting = counted
    tenant = make_tenant(kernel, budget_usd=BUDGET_USD)
    admin = tenant.principal
    kernel.tenancy.change_agent(admin, tenant.agent.id, on_budget="pause")
    run_ids = _submit_all(kernel, tenant)
    worker = WorkerPool(kernel, concurrency=8).start()
    try:
        _wait_settled(kernel, tenant, run_ids)
        runs = [kernel.runs.get(admin, rid) for rid in run_ids]
        done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
        paused = [r for r in runs if r.status is RunStatus.PAUSED]
        assert (len(done), len(paused)) == (FITTING, RUNS - FITTING)
        assert sum(counting.calls.values()) == FITTING  # no paused run called its skill
        for r in paused:
            (pause,) = kernel.pauses.pauses(admin.tenant_id, r.id)
            assert pause.reason.value == "BUDGET_WARNING" and pause.is_open
            assert pause.violations == ("BUDGET_EXCEEDED",)
            assert "raise the budget" in pause.message
            assert r.steps == ()
        _assert_nothing_held(kernel, tenant, run_ids)

        # Resumed without more budget: the step reserves again and pauses again.
        kernel.pauses.try_resume(admin, paused[0].id)
        _wait_paused_again(kernel, tenant, paused[0].id)

        with TestClient(create_app(kernel)) as client:
            raised = client.patch(
                f"/api/v1/agents/{tenant.agent.id}",
                headers=auth(tenant),
                json={"budget_usd": RUNS * RUN_COST / 1_000_000},
            )
            assert raised.status_code == 200, raised.text
            for r in paused:
                answer = client.post(f"/api/v1/runs/{r.id}/resume", headers=auth(tenant))
                assert answer.status_code == 200, answer.text
        _wait_final(kernel, tenant, run_ids)
    finally:
        worker.stop()
    runs = [kernel.runs.get(admin, rid) for rid in run_ids]
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    assert all(counting.calls[rid] == 1 for rid in run_ids)
    agent = _assert_nothing_held(kernel, tenant, run_ids)
    assert agent.spent_micros == RUNS * RUN_COST


def _wait_paused_again(kernel: Kernel, tenant: TenantContext, run_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pauses = kernel.pauses.pauses(tenant.principal.tenant_id, run_id)
        if len(pauses) == 2 and pauses[1].is_open:
            assert not pauses[0].is_open and pauses[1].reason.value == "BUDGET_WARNING"
            return
        time.sleep(0.1)
    raise AssertionError("the resumed run did not pause again")


def test_on_budget_cap_lowers_max_tokens_to_what_is_left_then_terminates(
    counted: tuple[Kernel, CountingChat],
) -> None:
    kernel, counting = counted
    tenant = make_tenant(kernel, budget_usd=(FITTING * RUN_COST + CAP_LEFT) / 1_000_000)
    admin = tenant.principal
    kernel.tenancy.change_agent(admin, tenant.agent.id, on_budget="cap")
    run_ids = _submit_all(kernel, tenant)
    workers = [WorkerPool(kernel, concurrency=8).start() for _ in range(2)]
    try:
        _wait_final(kernel, tenant, run_ids)
    finally:
        for worker in workers:
            worker.stop()
    runs = [kernel.runs.get(admin, rid) for rid in run_ids]
    done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    full = [r for r in done if r.cost_micros == RUN_COST]
    capped = [r for r in done if r.cost_micros != RUN_COST]
    refused = [r for r in runs if r.status is not RunStatus.SUCCEEDED]
    assert (len(full), len(capped), len(refused)) == (FITTING, 1, RUNS - FITTING - 1)
    (step,) = capped[0].steps
    assert step.input["max_tokens"] == CAP_FLOOR
    assert "lowered from 10 to 2" in step.input["budget_cap"]
    assert step.output["content"] == "a b" and capped[0].cost_micros == 14
    for r in refused:
        assert (r.status, r.error_code, r.steps) == (RunStatus.FAILED_POLICY, "budget_exceeded", ())
        assert "fewer than the floor of 2 (on_budget cap)" in (r.error_message or "")
    assert sum(counting.calls.values()) == FITTING + 1
    agent = _assert_nothing_held(kernel, tenant, run_ids)
    assert agent.spent_micros == FITTING * RUN_COST + 14


def test_under_cap_a_skill_that_cannot_be_lowered_terminates(kernel: Kernel) -> None:
    tenant = make_tenant(kernel, budget_usd=0.000001)
    kernel.tenancy.change_agent(tenant.principal, tenant.agent.id, on_budget="cap")
    plan = {
        "steps": [
            {
                "skill": "json.transform",
                "params": {"data": {"a": 1}, "expression": "a"},
                "estimated_cost_usd": 0.01,
            }
        ]
    }
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    worker = WorkerPool(kernel, concurrency=1).start()
    try:
        _wait_final(kernel, tenant, [run_id])
    finally:
        worker.stop()
    run = kernel.runs.get(tenant.principal, run_id)
    assert (run.status, run.error_code) == (RunStatus.FAILED_POLICY, "budget_exceeded")
    assert "cannot be lowered" in (run.error_message or "")


def _month_row(kernel: Kernel, tenant_id: str) -> Any:
    found = rows(kernel, "SELECT * FROM tenant_spend WHERE tenant_id = :t", t=tenant_id)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("mode", ["terminate", "pause"])
def test_a_tenants_monthly_cap_holds_across_its_agents(
    counted: tuple[Kernel, CountingChat], mode: str
) -> None:
    kernel, counting = counted
    tenant = make_tenant(kernel)
    admin = tenant.principal
    agents = [tenant.agent.id] + [
        kernel.tenancy.create_agent(admin, f"agent-{i}", 100.0).id for i in range(3)
    ]
    for agent_id in agents:
        kernel.tenancy.change_agent(admin, agent_id, on_budget=mode)
    _set_cap(kernel, admin.tenant_id, BUDGET_USD)
    run_ids = [
        kernel.runs.submit(admin, agent_id=agents[i % 4], plan=PLAN).run.id for i in range(RUNS)
    ]
    pools = [WorkerPool(kernel, concurrency=8).start() for _ in range(2)]
    try:
        _wait_settled(kernel, tenant, run_ids)
        runs = [kernel.runs.get(admin, rid) for rid in run_ids]
        done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
        assert len(done) == FITTING and sum(counting.calls.values()) == FITTING
        held = [r for r in runs if r.status is not RunStatus.SUCCEEDED]
        for r in held:
            if mode == "pause":
                assert r.status is RunStatus.PAUSED
                (pause,) = kernel.pauses.pauses(admin.tenant_id, r.id)
                assert "tenant's monthly cost cap" in pause.message
            else:
                assert (r.status, r.error_code) == (RunStatus.FAILED_POLICY, "budget_exceeded")
                assert "tenant's monthly cost cap" in (r.error_message or "")
        month = _month_row(kernel, admin.tenant_id)
        assert month.spent_micros == FITTING * RUN_COST <= BUDGET_USD * 1_000_000
        assert month.reserved_micros == 0
        spent = sum(_agent_row(kernel, a).spent_micros for a in agents)
        assert spent == month.spent_micros == sum(r.cost_micros for r in runs)
        assert all(_agent_row(kernel, a).reserved_micros == 0 for a in agents)
        assert [run_row(kernel, rid).reserved_micros for rid in run_ids] == [0] * RUNS
        if mode == "pause":
            _set_cap(kernel, admin.tenant_id, None)
            for r in held:
                kernel.pauses.try_resume(admin, r.id)
            _wait_final(kernel, tenant, run_ids)
            assert all(kernel.runs.get(admin, rid).status is RunStatus.SUCCEEDED for rid in run_ids)
            month = _month_row(kernel, admin.tenant_id)
            assert (month.spent_micros, month.reserved_micros) == (RUNS * RUN_COST, 0)
    finally:
        for pool in pools:
            pool.stop()


def _set_cap(kernel: Kernel, tenant_id: str, usd: float | None) -> None:
    from runkernel.domain.records import Principal

    operator = Principal.operator("key_operator")
    kernel.tenancy.set_limits(operator, tenant_id, usd)
