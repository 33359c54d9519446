"""Outbox test helpers, and a relay process: ``python relay_process.py --db URL --log FILE``.

The process runs a :class:`RelayRunner` whose bus appends each published event to
``--log`` as one JSON line, flushed before the next, so another process sees what was
published even after a SIGKILL. With ``--block-before-mark MARKER`` the relay publishes
its first batch, creates ``MARKER`` and hangs before marking it published: the window a
crash test kills it in. It prints ``READY <relay_id>`` once relaying; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

from runkernel.adapters.bus import InProcessBus
from runkernel.adapters.db.engine import Database, open_database
from runkernel.adapters.db.outbox import SqlOutboxRepository
from runkernel.adapters.db.unit_of_work import SqlUnitOfWork
from runkernel.domain.events import Event
from runkernel.entrypoints.relay import RelayRunner
from runkernel.services.ports import EventBus, SystemClock
from runkernel.services.relay import Relay

SCRIPT = Path(__file__).resolve()

# -- helpers for in-process tests ----------------------------------------------------------


class FakeClock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class BusLog:
    """Every event a bus delivered, in delivery order (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    @classmethod
    def on(cls, bus: InProcessBus) -> tuple[InProcessBus, BusLog]:
        log = cls()
        bus.subscribe("*", log.record)
        return bus, log

    def record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def ids(self, run_id: str | None = None) -> list[str]:
        with self._lock:
            return [e.id for e in self.events if run_id is None or e.run_id == run_id]


def repo(db: Database, uow: SqlUnitOfWork) -> SqlOutboxRepository:
    return SqlOutboxRepository(uow.connection, db.dialect)


def add_events(db: Database, events: Sequence[Event]) -> None:
    with SqlUnitOfWork(db) as uow:
        repo(db, uow).add(events)
        uow.commit()


def outbox_rows(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT * FROM outbox ORDER BY seq")))


def relay_for(
    db: Database,
    bus: EventBus,
    clock: FakeClock | SystemClock,
    relay_id: str,
    *,
    batch: int = 100,
    lease_ms: int = 10_000,
    outbox: Callable[[SqlUnitOfWork], Any] | None = None,
) -> Relay[SqlUnitOfWork]:
    return Relay(
        lambda: SqlUnitOfWork(db),
        outbox or (lambda uow: repo(db, uow)),
        bus,
        clock,
        relay_id=relay_id,
        batch=batch,
        lease_ms=lease_ms,
    )


def read_file_log(path: Path) -> list[tuple[str, Event]]:
    """``(relay_id, event)`` for each line a relay process appended, in order."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        found.append((record["relay"], Event.from_dict(record["event"])))
    return found


class RelayProcess:
    """One relay child process; its stdout and stderr go to files in ``workdir``."""

    def __init__(self, database_url: str, log: Path, workdir: Path, **options: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"relay-{id(self)}.out"
        self.stderr_path = workdir / f"relay-{id(self)}.err"
        args = [sys.executable, str(SCRIPT), "--db", database_url, "--log", str(log)]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err)

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()[-4000:]

    def wait_ready(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited early:\n{self.output()}")
            for line in self.stdout_path.read_text().splitlines():
                if line.startswith("READY "):
                    return line.split(" ", 1)[1]
            time.sleep(0.05)
        raise AssertionError(f"relay not ready after {timeout} s:\n{self.output()}")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def ensure_dead(self) -> None:
        """Test clean-up: a process still alive here is killed so nothing leaks."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# -- the process -----------------------------------------------------------------------------


class FileBus(InProcessBus):
    """Appends each event to a file shared with the test process, then delivers it."""

    def __init__(self, path: Path, relay_id: str) -> None:
        super().__init__()
        self._file = path.open("a", encoding="utf-8")
        self._relay_id = relay_id

    def publish(self, event: Event) -> None:
        # One write per line, flushed: a SIGKILL loses at most the event being written.
        self._file.write(json.dumps({"relay": self._relay_id, "event": event.to_dict()}) + "\n")
        self._file.flush()
        super().publish(event)


class BlockBeforeMark:
    """An outbox that hangs instead of marking events published, after saying so."""

    def __init__(self, inner: SqlOutboxRepository, marker: Path) -> None:
        self._inner = inner
        self._marker = marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def mark_published(self, ids: Sequence[str], now_ms: int) -> int:
        self._marker.write_text(json.dumps(list(ids)))
        while True:  # until the test kills the process
            time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--relay-id", required=True)
    parser.add_argument("--lease-ms", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--poll-s", type=float, default=0.1)
    parser.add_argument("--block-before-mark", type=Path)
    args = parser.parse_args()

    db = open_database(args.db)
    marker: Path | None = args.block_before_mark

    def outbox(uow: SqlUnitOfWork) -> Any:
        inner = repo(db, uow)
        return inner if marker is None else BlockBeforeMark(inner, marker)

    bus = FileBus(args.log, args.relay_id)
    relay = relay_for(
        db,
        bus,
        SystemClock(),
        args.relay_id,
        batch=args.batch,
        lease_ms=args.lease_ms,
        outbox=outbox,
    )
    runner = RelayRunner(relay, poll_interval_s=args.poll_s).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"READY {args.relay_id}", flush=True)
    while not stop.wait(0.1):
        pass
    runner.stop()
    db.dispose()
    print(f"STOPPED published={runner.published}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
