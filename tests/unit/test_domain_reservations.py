"""What a step reserves before it runs: its worst case, priced from its rendered params
(``llm.chat``) or declared in the plan (``estimated_cost_usd``) or the configured default."""

from __future__ import annotations

from typing import Any

import pytest

from runkernel.adapters.skills import SkillRegistry
from runkernel.adapters.skills.pricing import estimated_input_tokens, worst_case_micros
from runkernel.domain import budgets
from runkernel.domain.plans import parse_plan, plan_from_dict
from runkernel.errors import PlanValidationError


def _parse(**extra: Any) -> Any:
    raw = {"steps": [{"step_id": "s", "skill": "a", "params": {}, **extra}]}
    return parse_plan(raw, max_steps=10, validate_skill=lambda name, params: None)


@pytest.mark.parametrize(("value", "micros"), [(0, 0), (0.25, 250_000), (1.5, 1_500_000)])
def test_a_declared_estimate_is_whole_micros_and_round_trips(value: Any, micros: int) -> None:
    plan = _parse(estimated_cost_usd=value)
    assert plan.steps[0].estimated_cost_micros == micros
    assert plan_from_dict(plan.to_dict()) == plan


def test_a_step_without_an_estimate_stores_none() -> None:
    plan = _parse()
    assert plan.steps[0].estimated_cost_micros is None
    assert "estimated_cost_usd" not in plan.to_dict()["steps"][0]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-0.01, ">= 0"),
        (True, "must be a number"),
        ([1], "must be a number"),
        ("0.5", "must be a number"),
        (float("nan"), "not a money amount"),
        (1e-9, "rounds to 0"),
        (1e12, "out of range"),
    ],
)
def test_a_bad_estimate_is_refused_at_submission(value: Any, fragment: str) -> None:
    with pytest.raises(PlanValidationError, match=fragment):
        _parse(estimated_cost_usd=value)


def test_the_prompt_estimate_bounds_words_and_characters() -> None:
    assert estimated_input_tokens(["a b c d"]) == 4  # echo-1's count: one per word
    assert estimated_input_tokens(["abcdefghij"]) == 3  # one word, 10 chars / 4 rounded up
    assert estimated_input_tokens(["", "x"]) == 1


def test_an_llm_call_is_reserved_at_its_prompt_and_max_tokens() -> None:
    # echo-1: 1 micro per input token, 2 per output token.
    assert worst_case_micros("echo-1", ["a b c"], 10) == 3 + 20


def test_the_skills_estimate_wins_then_the_declared_then_the_default() -> None:
    assert budgets.per_call(7, 100, 1000) == 7
    assert budgets.per_call(None, 100, 1000) == 100
    assert budgets.per_call(None, None, 1000) == 1000
    assert budgets.worst_case(7, retries=2) == 21  # every try may be paid for


@pytest.mark.parametrize(
    ("limit", "cost", "reservation", "refused"),
    [(None, 10**12, 10**12, False), (100, 60, 40, False), (100, 60, 41, True)],
)
def test_the_runs_own_limit(limit: int | None, cost: int, reservation: int, refused: bool) -> None:
    assert (budgets.run_refusal(limit, cost, reservation) is not None) is refused


def test_the_registry_estimates_only_for_skills_that_can() -> None:
    registry = SkillRegistry()
    registry.register("plain", lambda params, context: None)
    registry.register("priced", lambda params, context: None, estimate=lambda params: 42)

    def broken(params: Any) -> int:
        raise KeyError("messages")

    registry.register("unpriceable", lambda params, context: None, estimate=broken)
    assert registry.estimate("plain", {}) is None
    assert registry.estimate("missing", {}) is None
    assert registry.estimate("priced", {}) == 42
    # Params a skill cannot price are refused by it at the call, before anything is paid.
    assert registry.estimate("unpriceable", {}) == 0


@pytest.mark.parametrize("per_call", [0, 1, 9, 10, 13, 14, 15, 29, 30, 1_000])
@pytest.mark.parametrize("model", ["echo-1", "gpt-4o", "gpt-4.1-nano"])
def test_the_tokens_affordable_are_the_most_whose_worst_case_fits(
    per_call: int, model: str
) -> None:
    from runkernel.adapters.skills.pricing import DEFAULT_PRICES

    price = DEFAULT_PRICES[model]
    texts = ["a b c d e f g h i j"]
    prompt = estimated_input_tokens(texts)
    tokens = budgets.output_tokens_affordable(
        per_call, prompt, price.input_micros_per_mtok, price.output_micros_per_mtok
    )
    if worst_case_micros(model, texts, 0) > per_call:
        assert tokens == 0
        return
    assert worst_case_micros(model, texts, tokens) <= per_call
    assert worst_case_micros(model, texts, tokens + 1) > per_call


def test_the_llm_skill_lowers_max_tokens_never_raises_it() -> None:
    from conftest import make_settings
    from runkernel.adapters.skills.egress import Egress
    from runkernel.adapters.skills.llm import ChatSkill

    settings = make_settings("sqlite://")
    chat = ChatSkill(settings, Egress.from_settings(settings))
    params = {
        "model": "echo-1",
        "messages": [{"role": "user", "content": "a b c"}],
        "max_tokens": 8,
    }
    lowered = chat.lower(params, 9)  # 3 input micros, then 2 per output token: 3 tokens
    assert lowered is not None and lowered.max_tokens == 3
    assert lowered.params == {**params, "max_tokens": 3} and "from 8 to 3" in lowered.note
    plenty = chat.lower(params, 1_000)
    assert plenty is not None and plenty.max_tokens == 8


def test_the_registry_lowers_only_skills_that_can() -> None:
    registry = SkillRegistry()
    registry.register("plain", lambda params, context: None)
    assert registry.lower("plain", {}, 100) is None
    assert registry.lower("unknown", {}, 100) is None


def test_a_share_splits_what_is_left_over_the_calls() -> None:
    assert budgets.per_call_share(30, 2) == 10
    assert budgets.per_call_share(-5, 0) == 0
    assert budgets.left(100, 70, 40) == 0 and budgets.left(100, 20, 30) == 50
