"""LISTEN/NOTIFY wake-ups on PostgreSQL: a thread that turns notifications into the local
wake-up signal. Polling stays as the fallback, so a dropped connection only costs latency."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import make_url

from runkernel.adapters.db.repositories import NOTIFY_CHANNEL
from runkernel.services.ports import WakeupSignal

log = logging.getLogger(__name__)


class PostgresListener:
    def __init__(self, database_url: str, wakeup: WakeupSignal) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._wakeup = wakeup
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rk-listen", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        import psycopg

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.connected.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._wakeup.notify()
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
