"""The in-process wake-up signal of the embedded default."""

from __future__ import annotations

import threading


class LocalWakeup:
    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def clear(self) -> None:
        self._event.clear()
