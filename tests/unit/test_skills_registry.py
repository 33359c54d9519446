from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from runkernel.adapters.skills import SkillRegistry, build_default_registry
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext, SkillResult, Usage
from runkernel.errors import PlanValidationError, SkillError

CTX = SkillContext(run_id="run-1", tenant_id="t-1", step_id="s-1", attempt=1)


def test_unknown_skill_is_a_plan_error_that_lists_known_skills() -> None:
    registry = SkillRegistry()
    registry.register("b.two", lambda p, c: None)
    registry.register("a.one", lambda p, c: None)

    with pytest.raises(PlanValidationError) as info:
        registry.validate("c.three", {})

    assert str(info.value) == "unknown skill 'c.three'; known skills: a.one, b.two"
    assert registry.names() == ["a.one", "b.two"]


def test_registering_a_name_twice_raises() -> None:
    registry = SkillRegistry()
    registry.register("x", lambda p, c: 1)

    with pytest.raises(ValueError, match="'x' is already registered"):
        registry.register("x", lambda p, c: 2)
    assert registry.invoke("x", {}, CTX).output == 1


def test_decorator_registers_and_returns_the_function() -> None:
    registry = SkillRegistry()

    @registry.skill("double", description="twice n")
    def double(params: dict[str, Any], context: SkillContext) -> int:
        return int(params["n"]) * 2

    assert double({"n": 2}, CTX) == 4
    assert registry.invoke("double", {"n": 21}, CTX) == SkillResult(output=42)
    assert registry.describe() == {"double": "twice n"}


def test_plain_return_value_becomes_output_and_skill_result_passes_through() -> None:
    registry = SkillRegistry()
    given = SkillResult(output="x", usage=Usage(3, 4), cost_micros=7)
    registry.register("dict", lambda p, c: {"seen": p, "step": c.step_id})
    registry.register("result", lambda p, c: given)

    result = registry.invoke("dict", {"a": 1}, CTX)

    assert result == SkillResult(output={"seen": {"a": 1}, "step": "s-1"})
    assert result.ok
    assert registry.invoke("result", {}, CTX) is given


def test_raised_errors_become_error_results() -> None:
    registry = SkillRegistry()

    def broken(params: dict[str, Any], context: SkillContext) -> None:
        raise KeyError("missing")

    def refusing(params: dict[str, Any], context: SkillContext) -> None:
        raise SkillError("quota exhausted")

    registry.register("broken", broken)
    registry.register("refusing", refusing)

    assert registry.invoke("broken", {}, CTX) == SkillResult(error="KeyError: 'missing'")
    assert registry.invoke("refusing", {}, CTX) == SkillResult(error="quota exhausted")


def test_invoking_an_unknown_skill_fails_the_step_not_the_caller() -> None:
    result = SkillRegistry().invoke("nope", {}, CTX)

    assert not result.ok
    assert result.error == "unknown skill 'nope'"


def test_validator_is_called_and_its_message_names_the_skill() -> None:
    registry = SkillRegistry()
    seen: list[Mapping[str, Any]] = []

    def positive(params: Mapping[str, Any]) -> None:
        seen.append(params)
        if params["n"] <= 0:
            raise PlanValidationError("n must be positive")

    registry.register("pos", lambda p, c: None, validate=positive)
    registry.validate("pos", {"n": 1})

    with pytest.raises(PlanValidationError, match=r"^pos: n must be positive$"):
        registry.validate("pos", {"n": 0})
    assert seen == [{"n": 1}, {"n": 0}]


def test_close_runs_closers_once() -> None:
    registry = SkillRegistry()
    closed: list[str] = []
    registry.on_close(lambda: closed.append("a"))
    registry.on_close(lambda: closed.append("b"))

    registry.close()
    registry.close()

    assert closed == ["b", "a"]


def test_default_registry_has_the_four_builtins_and_checks_their_params() -> None:
    registry = build_default_registry(Settings())
    try:
        assert registry.names() == ["http.request", "json.transform", "llm.chat", "webhook.send"]
        with pytest.raises(PlanValidationError, match=r"^http.request: missing param\(s\): url$"):
            registry.validate("http.request", {"method": "GET"})
        with pytest.raises(PlanValidationError, match="unknown param.*max_token;"):
            registry.validate(
                "llm.chat",
                {
                    "model": "echo-1",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 5,
                    "max_token": 5,
                },
            )
    finally:
        registry.close()


@pytest.mark.parametrize(
    ("skill", "params"),
    [
        (
            "llm.chat",
            {
                "model": "{{steps.pick.output}}",
                "messages": "{{steps.m.output}}",
                "max_tokens": "{{steps.n.output}}",
                "temperature": "{{steps.t.output}}",
            },
        ),
        (
            "llm.chat",
            {
                "model": "echo-1",
                "max_tokens": 3,
                "messages": ["{{steps.m.output}}", {"role": "{{r}}", "content": "x"}],
            },
        ),
        (
            "http.request",
            {
                "method": "{{steps.m.output}}",
                "url": "{{steps.u.output}}",
                "headers": "{{h}}",
                "timeout_s": "{{t}}",
                "ok_status": "{{s}}",
            },
        ),
        ("http.request", {"method": "GET", "url": "{{base}}/x", "ok_status": [404, "{{s}}"]}),
        ("json.transform", {"data": "{{steps.a.output}}", "expression": "{{steps.e.output}}"}),
        ("webhook.send", {"url": "{{u}}", "payload": "{{p}}", "timeout_s": "{{t}}"}),
    ],
)
def test_builtin_validators_skip_templates(skill: str, params: dict[str, Any]) -> None:
    registry = build_default_registry(Settings())
    try:
        registry.validate(skill, params)  # raises if a template was checked as a value
    finally:
        registry.close()


@pytest.mark.parametrize(
    "raised",
    [
        ValueError("Invalid IPv6 URL"),
        RecursionError("maximum recursion depth exceeded"),
        TypeError("unhashable type: 'list'"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        KeyError("url"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_exception_from_a_validator_is_a_plan_error_naming_the_skill(
    raised: Exception,
) -> None:
    registry = SkillRegistry()

    def validate(params: Mapping[str, Any]) -> None:
        raise raised

    registry.register("x.y", lambda p, c: None, validate=validate)
    with pytest.raises(PlanValidationError) as info:
        registry.validate("x.y", {})
    assert info.value.message == f"x.y: params cannot be checked: {type(raised).__name__}: {raised}"
    assert info.value.__cause__ is raised


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"method": "GET", "url": "http://[::1"}, "cannot be parsed: Invalid IPv6 URL"),
        ({"method": "GET", "url": "http://[zz]/x"}, "cannot be parsed"),
        ({"method": "GET", "url": "http://h:99999/"}, "cannot be parsed: Port out of range"),
        ({"method": "GET", "url": "http://h:x/"}, "cannot be parsed"),
        ({"method": "GET", "url": "http://:80/"}, "must be an absolute http"),
    ],
)
def test_a_url_that_urlsplit_refuses_is_a_plan_error(params: dict[str, Any], fragment: str) -> None:
    registry = build_default_registry(Settings())
    try:
        with pytest.raises(PlanValidationError, match=r"^http\.request: .*" + fragment):
            registry.validate("http.request", params)
    finally:
        registry.close()


def test_a_deeply_nested_expression_is_a_plan_error_not_a_recursion_crash() -> None:
    registry = build_default_registry(Settings())
    try:
        expression = "[" * 5000 + "a" + "]" * 5000
        with pytest.raises(PlanValidationError, match=r"^json\.transform: .*RecursionError"):
            registry.validate("json.transform", {"data": {}, "expression": expression})
    finally:
        registry.close()


COUNT = "; it must be an integer from 0 to 9007199254740992"


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (SkillResult(output=1, usage="lots"), "usage that is not a Usage: 'lots'"),  # type: ignore[arg-type]
        (SkillResult(usage=Usage(-1, 0)), "usage.input_tokens -1" + COUNT),
        (SkillResult(usage=Usage(0, 2**60)), f"usage.output_tokens {2**60}" + COUNT),
        (SkillResult(cost_micros=-5), "cost_micros -5" + COUNT),
        (SkillResult(cost_micros=1.5), "cost_micros 1.5" + COUNT),  # type: ignore[arg-type]
        (SkillResult(cost_micros=True), "cost_micros True" + COUNT),
        (SkillResult(cost_micros=2**63), f"cost_micros {2**63}" + COUNT),
        (SkillResult(error=b"no"), "an error that is not text: b'no'"),  # type: ignore[arg-type]
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_result_that_cannot_be_accounted_for_is_a_failed_step(
    result: SkillResult, problem: str
) -> None:
    """Usage and cost are summed into the run and its agent's spend: a negative, fractional
    or 64-bit-overflowing count would corrupt the budget or fail the write."""
    registry = SkillRegistry()
    registry.register("odd", lambda p, c: result)
    assert registry.invoke("odd", {}, CTX) == SkillResult(error=f"odd returned {problem}")
