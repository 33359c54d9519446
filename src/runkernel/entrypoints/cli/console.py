"""The two rich consoles every command prints through."""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 120

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def widen_when_piped() -> None:
    """Give piped or captured output 120 columns instead of rich's 80.

    Without a terminal rich assumes 80 columns and folds run ids across lines, which breaks
    copy-paste and grep; an explicit ``COLUMNS`` still wins."""
    for console in (stdout, stderr):
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = PIPED_WIDTH
