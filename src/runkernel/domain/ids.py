"""Time-ordered identifiers: newer ids sort after older ones, so claims run roughly FIFO."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 12 hex digits of milliseconds + 16 random hex digits (UUIDv7-like)."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


def id_pattern(prefix: str) -> str:
    """The regular expression every id :func:`new_id` makes with ``prefix`` matches."""
    return rf"^{prefix}_[0-9a-f]{{28}}$"
