"""``json.transform``: a JMESPath expression applied to data.

Params: ``{"data", "expression"}``; output: the expression's result (``None`` when nothing
matches, as JMESPath defines it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from runkernel.adapters.skills._checks import check_at_call, check_keys, fail, skip
from runkernel.domain.skills import SkillContext
from runkernel.errors import SkillError

NAME = "json.transform"


def validate(params: Mapping[str, Any], *, templates: bool = True) -> None:
    check_keys(params, ("data", "expression"), ())
    expression = params["expression"]
    if skip(expression, templates):
        return
    if not isinstance(expression, str):
        fail(f"expression must be a string, got {expression!r}")
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        fail(f"bad JMESPath expression {expression!r}: {exc}")


def transform(params: dict[str, Any], context: SkillContext) -> Any:
    check_at_call(NAME, validate, params)
    try:
        return jmespath.search(params["expression"], params["data"])
    except JMESPathError as exc:
        # e.g. a function applied to a value of the wrong type, known only with the data
        raise SkillError(f"{NAME}: {exc}") from exc
