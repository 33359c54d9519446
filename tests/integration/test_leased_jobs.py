"""Jobs behind a process lease, on both databases: of two processes only the holder runs
the job; the holder that loses its lease stops the job at once; stopping releases the
lease so the standby takes over; a holder cut off from the database stops before its lease
could run out. Ticks are driven by hand on a fake clock, so nothing here waits on time
except the last test, which runs the real threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from conftest import make_settings
from runkernel.adapters.db.leases import Lease
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.entrypoints import leases
from runkernel.entrypoints.background import BackgroundServices
from runkernel.entrypoints.leases import LeasedJob
from support.workers import wait_until

TTL = 3_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class FakeJob:
    def __init__(self, log: list[str], who: str) -> None:
        self.log, self.who = log, who

    def start(self) -> FakeJob:
        self.log.append(f"{self.who} start")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.log.append(f"{self.who} stop")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kernels(database_url: str, clock: FakeClock) -> Iterator[Callable[[], Kernel]]:
    """Kernels on one database, as separate processes have (each its own engine)."""
    with ExitStack() as stack:

        def new() -> Kernel:
            kernel = build_kernel(make_settings(database_url), clock=clock)
            stack.callback(kernel.close)
            kernel.migrate()
            return kernel

        yield new


def lease_row(kernel: Kernel, name: str = leases.SWEEP) -> Lease | None:
    with kernel.uow(read_only=True) as uow:
        return uow.leases.get(name)


def leased(kernel: Kernel, holder: str, log: list[str]) -> LeasedJob:
    return LeasedJob(kernel, leases.SWEEP, lambda: FakeJob(log, holder), holder=holder, ttl_ms=TTL)


def test_only_the_holder_runs_the_job(kernels: Callable[[], Kernel], clock: FakeClock) -> None:
    log: list[str] = []
    a, b = leased(kernels(), "a", log), leased(kernels(), "b", log)
    a.tick()
    b.tick()
    assert (a.holding, b.holding, log) == (True, False, ["a start"])
    clock.now += a.tick_ms
    a.tick()  # renewed: the job keeps running, nothing restarts
    b.tick()
    assert (a.holding, b.holding, log) == (True, False, ["a start"])
    assert lease_row(a.kernel) == Lease(leases.SWEEP, "a", clock.now + TTL, clock.now - a.tick_ms)


def test_a_holder_that_lost_its_lease_stops_the_job_at_once(
    kernels: Callable[[], Kernel], clock: FakeClock
) -> None:
    log: list[str] = []
    a, b = leased(kernels(), "a", log), leased(kernels(), "b", log)
    a.tick()
    clock.now += TTL  # a missed its renewals (a long pause): the lease ran out
    b.tick()
    assert b.holding and log == ["a start", "b start"]
    a.tick()  # its renewal is refused
    assert (a.holding, a.losses, log[-1]) == (False, 1, "a stop")
    a.tick()  # and it cannot take the lease back while b holds it
    assert not a.holding and log == ["a start", "b start", "a stop"]
    holder = lease_row(b.kernel)
    assert holder is not None and holder.holder == "b"


def test_stopping_releases_the_lease_for_the_standby(
    kernels: Callable[[], Kernel], clock: FakeClock
) -> None:
    log: list[str] = []
    a, b = leased(kernels(), "a", log), leased(kernels(), "b", log)
    a.tick()
    b.tick()
    a.stop()
    assert log == ["a start", "a stop"] and lease_row(a.kernel) is None
    b.tick()  # at once, not after the time to live
    assert b.holding and log[-1] == "b start"


def test_a_holder_cut_off_from_the_database_stops_before_its_lease_ends(
    kernels: Callable[[], Kernel], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    a, b = leased(kernels(), "a", log), leased(kernels(), "b", log)
    a.tick()
    expires = clock.now + TTL

    def unreachable(**_: object) -> None:
        raise ConnectionError("database away")

    monkeypatch.setattr(a.kernel, "uow", unreachable)
    clock.now += a.tick_ms
    a.tick()  # one failed renewal: the lease still has two ticks to run
    assert a.holding
    clock.now += a.tick_ms
    a.tick()  # the next tick would come after expiry: stop now
    assert (a.holding, log) == (False, ["a start", "a stop"])
    assert clock.now < expires
    clock.now = expires
    b.tick()
    assert b.holding and log[-1] == "b start"


def test_a_job_that_is_not_offered_takes_no_lease(kernels: Callable[[], Kernel]) -> None:
    kernel = kernels()
    assert BackgroundServices(kernel).names == [leases.RELAY, leases.SWEEP]
    assert BackgroundServices(kernel, relay=False).names == [leases.SWEEP]
    assert BackgroundServices(kernel, reconciler=False).names == [leases.RELAY]


def test_the_ack_forwarder_is_leased_with_a_non_sql_audit_store(database_url: str) -> None:
    kernel = build_kernel(make_settings(database_url, mode="local", audit_store="memory"))
    try:
        assert BackgroundServices(kernel).names == [
            leases.RELAY,
            leases.ACK_FORWARDER,
            leases.SWEEP,
        ]
    finally:
        kernel.close()


def test_two_processes_share_the_jobs_one_holder_each(database_url: str) -> None:
    """The real keeper threads: each job has one holder; stopping it hands the job over."""
    settings = make_settings(database_url, lease_s=0.6, reconcile_interval_s=0.05)
    first, second = build_kernel(settings), build_kernel(settings)
    first.migrate()
    services = [BackgroundServices(k, holder=h) for k, h in ((first, "p1"), (second, "p2"))]
    try:
        for s in services:
            s.start()
        # A holder's job starts just after its acquisition commits: wait for both.
        wait_until(
            lambda: all(any(s.jobs[i].holding for s in services) for i in (0, 1)),
            timeout=10,
            what="each job to have a holder",
        )
        for index, name in enumerate((leases.RELAY, leases.SWEEP)):
            row = lease_row(first, name)
            assert row is not None
            holders = [s for s in services if s.jobs[index].holding]
            assert [s.holder for s in holders] == [row.holder], name
        relay_holder = next(s for s in services if s.jobs[0].holding)
        standby = next(s for s in services if s is not relay_holder)
        relay_holder.stop()
        wait_until(lambda: standby.jobs[0].holding, timeout=10, what="the standby to take over")
        row = lease_row(first, leases.RELAY)
        assert row is not None and row.holder == standby.holder
        wait_until(lambda: standby.sweeps > 0, timeout=10, what="the standby to sweep")
    finally:
        for s in services:
            s.stop()
        first.close()
        second.close()
