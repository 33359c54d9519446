"""User skills for worker tests, registered on a fresh :class:`SkillRegistry`.

``test.log`` appends one JSON line per call — ``(run_id, step_id, attempt, try, pid,
thread)`` — to ``<log_dir>/<pid>.jsonl``, so calls made in several processes can be
counted afterwards. ``test.block`` logs the same way, then (on the attempt named in its
params) touches a marker file and sleeps, which is how a test catches a worker mid-step.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runkernel.adapters.skills import SkillRegistry
from runkernel.domain.skills import SkillContext, SkillResult, Usage
from runkernel.errors import PlanValidationError

LOG_SKILL = "test.log"
BLOCK_SKILL = "test.block"


@dataclass(frozen=True)
class Call:
    run_id: str
    step_id: str
    attempt: int
    try_number: int
    pid: int
    thread: str


class CallLog:
    """Append-only per-process log file; one ``write`` per line under a lock."""

    def __init__(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self._path = log_dir / f"{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    def append(self, context: SkillContext) -> None:
        line = json.dumps(
            {
                "run_id": context.run_id,
                "step_id": context.step_id,
                "attempt": context.attempt,
                "try_number": context.try_number,
                "pid": os.getpid(),
                "thread": threading.current_thread().name,
            }
        )
        with self._lock, open(self._path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def read_calls(log_dir: Path) -> list[Call]:
    calls = []
    for path in sorted(log_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                calls.append(Call(**json.loads(line)))
    return calls


def build_registry(log_dir: Path) -> SkillRegistry:
    log = CallLog(log_dir)
    registry = SkillRegistry()

    def log_skill(params: dict[str, Any], context: SkillContext) -> SkillResult:
        log.append(context)
        return SkillResult(
            output={"step": context.step_id, "n": params.get("n")},
            usage=Usage(1, 1),
            cost_micros=1,
        )

    def block_skill(params: dict[str, Any], context: SkillContext) -> SkillResult:
        log.append(context)
        if context.attempt == int(params.get("block_attempt", 1)):
            Path(params["marker"]).write_text(f"{os.getpid()}\n", encoding="utf-8")
            time.sleep(float(params.get("sleep_s", 600)))
        return SkillResult(output={"step": context.step_id, "blocked": True})

    def validate_block(params: Mapping[str, Any]) -> None:
        if not isinstance(params.get("marker"), str):
            raise PlanValidationError("test.block needs a 'marker' path")

    registry.register(LOG_SKILL, log_skill, description="log the call")
    registry.register(BLOCK_SKILL, block_skill, validate=validate_block, description="block")
    return registry


def log_plan(steps: int) -> dict[str, Any]:
    return {
        "steps": [
            {"step_id": f"s{i}", "skill": LOG_SKILL, "params": {"n": i}} for i in range(steps)
        ]
    }


def blocking_plan(marker: Path, *, sleep_s: float = 600, block_attempt: int = 1) -> dict[str, Any]:
    """Three steps; the second blocks (on ``block_attempt``) after touching ``marker``."""
    return {
        "steps": [
            {"step_id": "first", "skill": LOG_SKILL, "params": {"n": 1}},
            {
                "step_id": "second",
                "skill": BLOCK_SKILL,
                "params": {
                    "marker": str(marker),
                    "sleep_s": sleep_s,
                    "block_attempt": block_attempt,
                },
            },
            {"step_id": "third", "skill": LOG_SKILL, "params": {"n": 3}},
        ]
    }
