"""Plans: what parse_plan refuses (with a message naming the step) and how templates render."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.plans import (
    OnError,
    Plan,
    RenderTooLarge,
    Step,
    TemplateError,
    parse_plan,
    plan_from_dict,
    render,
)
from runkernel.errors import PlanValidationError

KNOWN = {"a.skill", "b.skill"}


def validate_skill(name: str, params: Mapping[str, Any]) -> None:
    if name not in KNOWN:
        raise PlanValidationError(f"unknown skill {name!r}", code="unknown_skill")


def parse(raw: Any, max_steps: int = 10) -> Plan:
    return parse_plan(raw, max_steps=max_steps, validate_skill=validate_skill)


def step(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"step_id": step_id, "skill": "a.skill", "params": {}, **extra}


def refused(raw: Any, max_steps: int = 10) -> PlanValidationError:
    with pytest.raises(PlanValidationError) as info:
        parse(raw, max_steps)
    return info.value


def test_a_valid_plan_parses_with_defaults_and_round_trips() -> None:
    plan = parse(
        {
            "steps": [
                step("fetch", params={"url": "x"}),
                {
                    "step_id": "use",
                    "skill": "b.skill",
                    "params": {"body": "{{steps.fetch.output.body}}"},
                    "on_error": "continue",
                    "retries": 2,
                    "output_key": "answer",
                },
            ]
        }
    )
    assert plan.steps == (
        Step("fetch", "a.skill", {"url": "x"}, OnError.ABORT, 0, None),
        Step(
            "use", "b.skill", {"body": "{{steps.fetch.output.body}}"}, OnError.CONTINUE, 2, "answer"
        ),
    )
    assert plan_from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("raw", "fragment", "code"),
    [
        (None, '{"steps": [...]}', "invalid_plan"),
        ({"steps": "x"}, '{"steps": [...]}', "invalid_plan"),
        ({"steps": []}, "at least one step", "invalid_plan"),
        ({"steps": ["x"]}, "step #0 must be an object", "invalid_plan"),
        (
            {"steps": [step("a", colour="red")]},
            "step 'a': unknown fields ['colour']",
            "invalid_plan",
        ),
        (
            {"steps": [step("a", extra=1, zed=2)]},
            "unknown fields ['extra', 'zed']",
            "invalid_plan",
        ),
        ({"steps": [step("a"), step("a")]}, "step #1: duplicate step_id 'a'", "invalid_plan"),
        ({"steps": [step("has space")]}, "step #0: step_id must match", "invalid_plan"),
        ({"steps": [step("x.y")]}, "step_id must match", "invalid_plan"),
        ({"steps": [step("a", skill="")]}, "'skill' must be a non-empty string", "invalid_plan"),
        ({"steps": [step("a", skill="nope")]}, "step 'a': unknown skill 'nope'", "unknown_skill"),
        ({"steps": [step("a", params=[1])]}, "'params' must be an object", "invalid_plan"),
        ({"steps": [step("a", on_error="retry")]}, "on_error must be", "invalid_plan"),
        (
            {"steps": [step("a", retries=11)]},
            "retries must be an integer from 0 to 10",
            "invalid_plan",
        ),
        ({"steps": [step("a", retries=-1)]}, "retries must be", "invalid_plan"),
        ({"steps": [step("a", retries=True)]}, "retries must be", "invalid_plan"),
        ({"steps": [step("a", retries=1.5)]}, "retries must be", "invalid_plan"),
        ({"steps": [step("a", output_key="")]}, "output_key must be", "invalid_plan"),
        (
            {"steps": [step("a", output_key="x"), step("b"), step("c", output_key="x")]},
            "step 'c': output_key 'x' is already the output_key of step 'a'",
            "invalid_plan",
        ),
        (
            {"steps": [step("a")], "stpes": [], "timeout": 5},
            "plan: unknown fields ['stpes', 'timeout']",
            "invalid_plan",
        ),
        ({"steps": [step("a")], "": 1}, "plan: unknown fields ['']", "invalid_plan"),
        (
            {"steps": [step("a", params={"x": "{{steps.b.output}}"}), step("b")]},
            "step 'a': template {{steps.b.output}} refers to 'b', which is not an earlier step",
            "invalid_template",
        ),
        (
            {"steps": [step("a", params={"x": "{{steps.a.output}}"})]},
            "refers to 'a', which is not an earlier step",
            "invalid_template",
        ),
        (
            {"steps": [step("a"), step("b", params={"x": ["{{steps.ghost.output.k}}"]})]},
            "refers to 'ghost'",
            "invalid_template",
        ),
        (
            {"steps": [step("a"), step("b", params={"x": {"deep": "{{steps.a.output"}})]},
            "unbalanced template braces",
            "invalid_template",
        ),
        (
            {"steps": [step("a"), step("b", params={"x": "steps.a.output}}"})]},
            "unbalanced template braces",
            "invalid_template",
        ),
        (
            {"steps": [step("a"), step("b", params={"x": "{{steps.a.result}}"})]},
            "bad template {{steps.a.result}}",
            "invalid_template",
        ),
        (
            {"steps": [step("a"), step("b", params={"x": "{{input.a.output}}"})]},
            "bad template",
            "invalid_template",
        ),
        (
            {"steps": [step("a"), step("b", params={"x": "{{steps.a.output..k}}"})]},
            "bad template",
            "invalid_template",
        ),
    ],
)
def test_bad_plans_are_refused_with_a_clear_message(raw: Any, fragment: str, code: str) -> None:
    error = refused(raw)
    assert fragment in str(error)
    assert error.code == code


def test_too_many_steps() -> None:
    error = refused({"steps": [step(f"s{i}") for i in range(4)]}, max_steps=3)
    assert (error.code, str(error)) == ("plan_too_large", "plan has 4 steps; the limit is 3")
    assert len(parse({"steps": [step(f"s{i}") for i in range(3)]}, max_steps=3).steps) == 3


OUTPUTS: dict[str, Any] = {
    "fetch": {
        "status": 200,
        "body": {"items": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], "ok": True},
        "none": None,
    },
    "text": "hello",
    "count": 3,
}


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("{{steps.count.output}}", 3),  # whole template keeps the JSON type
        ("{{steps.fetch.output.status}}", 200),
        ("{{steps.fetch.output.body.ok}}", True),
        ("{{steps.fetch.output.none}}", None),
        ("{{steps.fetch.output.body.items}}", OUTPUTS["fetch"]["body"]["items"]),
        ("  {{ steps.fetch.output.body.items.1 }}  ", {"id": 2, "name": "two"}),
        ("{{steps.fetch.output.body.items.0.name}}", "one"),
        ("{{steps.fetch.output.body.items.-1.id}}", 2),
        ("n={{steps.count.output}}", "n=3"),  # embedded renders text
        ("{{steps.text.output}}, world", "hello, world"),
        ("ok: {{steps.fetch.output.body.ok}}", "ok: true"),
        ("v: {{steps.fetch.output.none}}", "v: null"),
        ("{{steps.count.output}}{{steps.count.output}}", "33"),
        ("item {{steps.fetch.output.body.items.0}}", 'item {"id":1,"name":"one"}'),
        ("no template here", "no template here"),
        (
            {"a": ["{{steps.count.output}}", {"b": "x{{steps.text.output}}"}], "n": 5},
            {"a": [3, {"b": "xhello"}], "n": 5},
        ),
        (7, 7),
        (None, None),
    ],
)
def test_render(value: Any, rendered: Any) -> None:
    assert render(value, OUTPUTS) == rendered


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{steps.missing.output}}", "step 'missing' has no output"),
        ("{{steps.fetch.output.nothere}}", "no 'nothere' in the output"),
        ("{{steps.fetch.output.body.items.2}}", "no '2' in the output"),
        ("{{steps.fetch.output.body.items.-3}}", "no '-3' in the output"),
        ("{{steps.fetch.output.body.items.first}}", "no 'first' in the output"),
        ("{{steps.count.output.x}}", "no 'x' in the output"),
        ("{{steps.text.output.0}}", "no '0' in the output"),  # strings are not indexable
        ("prefix {{steps.fetch.output.nothere}}", "no 'nothere'"),
        (["{{steps.fetch.output.status}}", {"k": "{{steps.fetch.output.x}}"}], "no 'x'"),
    ],
)
def test_render_of_a_missing_value_raises_template_error(value: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(")):
        render(value, OUTPUTS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values)
def test_whole_template_returns_the_output_itself(value: Any) -> None:
    assert render("{{steps.s.output}}", {"s": value}) == value
    assert render({"k": ["{{steps.s.output}}"]}, {"s": value}) == {"k": [value]}


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20))
def test_text_without_templates_renders_unchanged(text: str) -> None:
    assert render(text, {}) == text


def test_templates_in_text_stop_rendering_past_the_limit() -> None:
    """Copies of an output inside text are real copies: the limit stops them while they
    are made, before an input of many times the output's size exists."""
    outputs = {"big": "x" * 1000}
    params = {"a": "{{steps.big.output}}|" * 3}
    assert render(params, outputs, max_chars=3000) == {"a": ("x" * 1000 + "|") * 3}
    with pytest.raises(RenderTooLarge, match="more than 2999 characters"):
        render(params, outputs, max_chars=2999)
    many = {"a": ["{{steps.big.output}}!"] * 1_000_000}
    with pytest.raises(RenderTooLarge):
        render(many, outputs, max_chars=100_000)


def test_whole_templates_share_the_output_instead_of_copying_it() -> None:
    outputs = {"big": {"body": "x" * 1000}}
    rendered = render(
        {"a": "{{steps.big.output}}", "b": ["{{steps.big.output}}"]}, outputs, max_chars=10
    )
    assert rendered["a"] is outputs["big"] and rendered["b"][0] is outputs["big"]


@pytest.mark.parametrize("value", [b"raw", {1, 2}, 10**5000], ids=["bytes", "set", "huge-int"])
def test_an_output_that_cannot_be_written_as_text_is_a_template_error(value: Any) -> None:
    with pytest.raises(TemplateError, match="cannot be written as text"):
        render("v={{steps.s.output}}", {"s": value})


def test_a_deeply_nested_output_in_text_is_a_template_error_not_a_recursion_crash() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TemplateError, match="cannot be written as text"):
        render("v={{steps.s.output}}", {"s": deep})
