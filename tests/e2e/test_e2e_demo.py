"""``runkernel demo`` (what ``make demo`` runs) finishes, exits 0 and says what happened."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_exits_0_and_prints_the_summary() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNKERNEL_")}
    done = subprocess.run(
        [sys.executable, "-m", "runkernel", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())  # undo rich's line wrapping
    assert "7 runs: 5 succeeded, 1 failed (step_failed: step 'fetch' (http.request)" in out
    assert "1 cancelled; webhook received with valid signature (1 delivery)" in out
    assert "every run reached the outcome the kernel promises" in out
    flat = " ".join(out.split())
    assert "policy evaluations 7 PASS; incidents 1 EXECUTION_FAILURE" in flat
    assert "audit clean for 7 of 7 runs" in flat
    assert "Traceback" not in done.stderr
