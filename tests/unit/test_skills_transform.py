from __future__ import annotations

from typing import Any

import pytest

from runkernel.adapters.skills import transform
from runkernel.adapters.skills.registry import SkillRegistry
from runkernel.domain.skills import SkillContext
from runkernel.errors import PlanValidationError

CTX = SkillContext(run_id="r", tenant_id="t", step_id="s", attempt=1)
DATA = {"items": [{"name": "a", "n": 1}, {"name": "b", "n": 2}, {"name": "c", "n": 5}]}


@pytest.fixture
def registry() -> SkillRegistry:
    registry = SkillRegistry()
    registry.register(transform.NAME, transform.transform, validate=transform.validate)
    return registry


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("items[].n", [1, 2, 5]),
        ("sum(items[].n)", 8),
        ("items[?n > `1`].name", ["b", "c"]),
        ("{first: items[0].name, count: length(items)}", {"first": "a", "count": 3}),
        ("nothing.here", None),
    ],
)
def test_transform_results(registry: SkillRegistry, expression: str, expected: Any) -> None:
    params = {"data": DATA, "expression": expression}
    registry.validate(transform.NAME, params)

    result = registry.invoke(transform.NAME, params, CTX)

    assert result.ok
    assert result.output == expected


def test_bad_expression_is_a_plan_error(registry: SkillRegistry) -> None:
    with pytest.raises(PlanValidationError, match=r"^json.transform: bad JMESPath expression"):
        registry.validate(transform.NAME, {"data": {}, "expression": "items[?"})


def test_non_string_expression_is_a_plan_error(registry: SkillRegistry) -> None:
    with pytest.raises(PlanValidationError, match="expression must be a string"):
        registry.validate(transform.NAME, {"data": {}, "expression": 3})


def test_bad_expression_at_call_fails_the_step(registry: SkillRegistry) -> None:
    result = registry.invoke(transform.NAME, {"data": {}, "expression": "a.["}, CTX)

    assert result.error is not None
    assert result.error.startswith("json.transform: bad JMESPath expression 'a.['")


def test_type_error_known_only_with_the_data_fails_the_step(registry: SkillRegistry) -> None:
    result = registry.invoke(transform.NAME, {"data": {"x": "text"}, "expression": "sum(x)"}, CTX)

    assert result.output is None
    assert result.error is not None
    assert result.error.startswith("json.transform: ")
    assert "sum" in result.error
