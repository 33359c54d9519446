"""Long-running commands (``worker``, ``reconciler``): start, print a line a supervisor
can wait for, block until SIGTERM or Ctrl-C, then stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from runkernel.entrypoints.serve import STOP_SIGNALS

log = logging.getLogger(__name__)


def run_until_signalled(
    start: Callable[[], object], stop: Callable[[], object], *, started: str, stopping: str
) -> None:
    stopped = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: %s", signal.Signals(signum).name, stopping)
        stopped.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        start()
        # flush: supervisors and tests read this line through a pipe.
        print(started, flush=True)
        # A timed wait keeps the main thread returning to the interpreter for signals.
        while not stopped.wait(1.0):
            pass
    finally:
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
