"""`runkernel runs show` lists the mid-run checks that paused or ended the run."""

from __future__ import annotations

from rich.console import Console

from runkernel.entrypoints.cli.views import run_detail


def test_runs_show_lists_the_policy_checks_of_a_run() -> None:
    run = {
        "id": "run_1",
        "status": "paused",
        "phase": "EXECUTING",
        "policy_checks": [
            {
                "step_index": 1,
                "decision": "PAUSE",
                "reason": "rule pol_1 changed",
                "violations": [{"type": "LIMIT_CHANGED", "message": "rule pol_1 changed"}],
            }
        ],
    }
    console = Console(record=True, width=200)
    console.print(run_detail(run))
    text = console.export_text()
    assert "policy checks" in text and "LIMIT_CHANGED" in text and "rule pol_1 changed" in text
