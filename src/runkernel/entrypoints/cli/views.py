"""Rich renderings of API answers: tables of agents and runs, one run in detail.

They read the JSON the API returns and tolerate optional fields being absent, so an older
or newer server still renders (a missing value shows as a dash)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

JsonObject = dict[str, Any]

STATUS_STYLES = {
    "queued": "dim",
    "running": "cyan",
    "paused": "magenta",
    "succeeded": "green",
    "failed": "red",
    "failed_policy": "red",
    "cancelled": "yellow",
    "retry": "yellow",
}
DASH = "—"


def status_text(status: Any) -> Text:
    name = str(status or DASH)
    return Text(name, style=STATUS_STYLES.get(name, ""))


def usd(value: Any) -> str:
    if value is None:
        return DASH
    return f"${float(value):.6f}"


def duration(ms: float | None) -> str:
    if ms is None:
        return DASH
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def timestamp_ms(value: Any) -> float | None:
    """Epoch milliseconds from either a number (ms) or an ISO-8601 string."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            return None
    return None


def run_error(run: JsonObject) -> tuple[str, str] | None:
    """(code, message) of a failed run, whether the API nests it or flattens it."""
    error = run.get("error")
    if isinstance(error, dict):
        return str(error.get("code") or "error"), str(error.get("message") or "")
    if isinstance(error, str) and error:
        return str(run.get("error_code") or "error"), error
    if run.get("error_code"):
        return str(run["error_code"]), str(run.get("error_message") or "")
    return None


def latency_ms(run: JsonObject) -> float | None:
    """Submission to final state, from the server's own timestamps."""
    start = timestamp_ms(run.get("created_at_ms", run.get("created_at")))
    end = timestamp_ms(run.get("finished_at_ms", run.get("finished_at")))
    transitions = run.get("transitions") or []
    if start is None and transitions:
        start = timestamp_ms(transitions[0].get("at_ms", transitions[0].get("at")))
    if end is None and transitions and run.get("phase") in ("COMPLETED", "FAILED"):
        end = timestamp_ms(transitions[-1].get("at_ms", transitions[-1].get("at")))
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def steps_done(run: JsonObject) -> int:
    return len(run.get("steps") or [])


def tokens(usage: Any) -> str:
    if not isinstance(usage, dict):
        return DASH
    return f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)}"


def agents_table(agents: list[JsonObject]) -> Table:
    table = Table(title="agents", title_justify="left")
    for column in ("id", "name", "budget", "spent"):
        table.add_column(column)
    for agent in agents:
        table.add_row(
            str(agent.get("id")),
            escape(str(agent.get("name"))),
            usd(agent.get("budget_usd")),
            usd(agent.get("spent_usd")),
        )
    return table


def runs_table(runs: list[JsonObject]) -> Table:
    table = Table(title=f"runs ({len(runs)})", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)  # whole, so it can be pasted into `runkernel show`
    for column in ("status", "phase", "tokens", "cost", "latency", "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        error = run_error(run)
        table.add_row(
            str(run.get("id")),
            status_text(run.get("status")),
            str(run.get("phase", DASH)),
            tokens(run.get("usage")),
            usd(run.get("cost_usd")),
            duration(latency_ms(run)),
            escape(error[0]) if error else "",
        )
    return table


def run_detail(run: JsonObject) -> RenderableType:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("run", str(run.get("id")))
    summary.add_row("agent", str(run.get("agent_id", DASH)))
    summary.add_row("status", status_text(run.get("status")))
    summary.add_row("phase", str(run.get("phase", DASH)))
    summary.add_row("attempt", str(run.get("attempt", DASH)))
    summary.add_row("cost", usd(run.get("cost_usd")))
    summary.add_row("tokens (in+out)", tokens(run.get("usage")))
    summary.add_row("latency", duration(latency_ms(run)))
    error = run_error(run)
    if error:
        summary.add_row("error", Text(f"{error[0]}: {error[1]}", style="red"))
    parts: list[RenderableType] = [summary, steps_table(run), transitions_table(run)]
    if run.get("policy_checks"):
        parts.append(policy_checks_table(run))
    if run.get("output") is not None:
        parts.append(output_panel(run["output"]))
    return Group(*parts)


def output_panel(output: Any) -> Panel:
    """The run's output in full, as JSON (a string as it is): it is what the run is for."""
    text = output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)
    return Panel(Text(text), title="output", title_align="left", box=box.ROUNDED)


def steps_table(run: JsonObject) -> Table:
    table = Table(title="steps", title_justify="left")
    for column in ("#", "step", "skill", "status", "tokens", "cost", "time", "attempt"):
        table.add_column(column, no_wrap=True)
    table.add_column("output / error", overflow="fold", ratio=1)
    for index, step in enumerate(run.get("steps") or []):
        detail = step.get("error") or _preview(step.get("output"))
        table.add_row(
            str(step.get("index", index)),
            escape(str(step.get("step_id"))),
            str(step.get("skill")),
            status_text(step.get("status")),
            tokens(step.get("usage")),
            usd(step.get("cost_usd")),
            duration(step.get("duration_ms")),
            str(step.get("attempt", DASH)),
            Text(str(detail), style="red" if step.get("error") else ""),
        )
    return table


def transitions_table(run: JsonObject) -> Table:
    table = Table(title="transitions", title_justify="left")
    for column in ("at", "phase", "status", "reason"):
        table.add_column(column, overflow="fold")
    for item in run.get("transitions") or []:
        at = timestamp_ms(item.get("at_ms", item.get("at")))
        when = datetime.fromtimestamp(at / 1000, UTC).strftime("%H:%M:%S.%f")[:-3] if at else DASH
        table.add_row(
            when,
            str(item.get("to_phase", DASH)),
            status_text(item.get("to_status")),
            escape(str(item.get("reason", ""))),
        )
    return table


def policy_checks_table(run: JsonObject) -> Table:
    table = Table(title="policy checks", title_justify="left")
    for column in ("step", "decision", "violations", "reason"):
        table.add_column(column, overflow="fold")
    for item in run.get("policy_checks") or []:
        table.add_row(
            str(item.get("step_index", DASH)),
            str(item.get("decision", DASH)),
            ", ".join(str(v.get("type")) for v in item.get("violations") or []) or DASH,
            escape(str(item.get("reason", ""))),
        )
    return table


def _preview(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
