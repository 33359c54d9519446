"""Reading a plan file for ``runkernel submit``.

A file holds either the plan itself (``{"steps": [...]}``) or a whole submission
(``{"agent_id"?, "plan", "budget"?, "idempotency_key"?, "metadata"?}``); YAML or JSON,
told apart by the extension (YAML is a superset of JSON, so anything else parses as YAML).
Flags given on the command line win over the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from runkernel.entrypoints.cli.errors import CliError

SUBMISSION_KEYS = frozenset({"agent_id", "plan", "budget", "idempotency_key", "metadata"})


def read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", code="bad_plan_file") from exc
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CliError(f"{path} is not valid JSON/YAML: {exc}", code="bad_plan_file") from exc


def build_submission(
    document: Any,
    *,
    agent_id: str | None,
    budget: dict[str, float | int | None],
    idempotency_key: str | None,
) -> dict[str, Any]:
    """The body of ``POST /api/v1/runs`` from a file's contents and the flags."""
    if not isinstance(document, dict):
        raise CliError("a plan file must hold an object", code="bad_plan_file")
    if "plan" in document:
        unknown = set(document) - SUBMISSION_KEYS
        if unknown:
            raise CliError(
                f"unknown keys in submission: {', '.join(sorted(unknown))}", code="bad_plan_file"
            )
        submission = dict(document)
    elif "steps" in document:
        submission = {"plan": document}
    else:
        raise CliError(
            'a plan file holds {"steps": [...]} or {"plan": {...}, "budget"?: {...}}',
            code="bad_plan_file",
        )
    if agent_id is not None:
        submission["agent_id"] = agent_id
    if not submission.get("agent_id"):
        raise CliError("no agent: pass --agent ID or put agent_id in the file", code="no_agent")
    given = {k: v for k, v in budget.items() if v is not None}
    if given:
        submission["budget"] = {**(submission.get("budget") or {}), **given}
    if idempotency_key is not None:
        submission["idempotency_key"] = idempotency_key
    return submission


def step_count(submission: dict[str, Any]) -> int:
    steps = (submission.get("plan") or {}).get("steps")
    return len(steps) if isinstance(steps, list) else 0
