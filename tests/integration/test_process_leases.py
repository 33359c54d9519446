"""The process-lease repository on both databases: one holder at a time, takeover only
after expiry, renew and release only by the holder, and one winner of a race."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import Database, open_database
from runkernel.adapters.db.leases import Lease
from runkernel.adapters.db.unit_of_work import SqlUnitOfWork

TTL = 1_000


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def acquire(db: Database, holder: str, now: int, name: str = "relay") -> bool:
    with SqlUnitOfWork(db) as uow:
        won = uow.leases.acquire(name, holder, now, TTL)
        uow.commit()
    return won


def renew(db: Database, holder: str, now: int, name: str = "relay") -> bool:
    with SqlUnitOfWork(db) as uow:
        kept = uow.leases.renew(name, holder, now, TTL)
        uow.commit()
    return kept


def release(db: Database, holder: str, name: str = "relay") -> bool:
    with SqlUnitOfWork(db) as uow:
        released = uow.leases.release(name, holder)
        uow.commit()
    return released


def current(db: Database, name: str = "relay") -> Lease | None:
    with SqlUnitOfWork(db, read_only=True) as uow:
        return uow.leases.get(name)


def test_a_held_lease_has_one_holder(db: Database) -> None:
    assert acquire(db, "a", now=10_000)
    assert not acquire(db, "b", now=10_001)
    assert current(db) == Lease("relay", "a", 11_000, 10_000)
    # Another name is another lease.
    assert acquire(db, "b", now=10_001, name="sweep")
    assert current(db, "sweep") == Lease("sweep", "b", 11_001, 10_001)


def test_the_holder_acquiring_again_renews_and_keeps_its_start(db: Database) -> None:
    assert acquire(db, "a", now=10_000)
    assert acquire(db, "a", now=10_500)
    assert current(db) == Lease("relay", "a", 11_500, 10_000)


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(db: Database) -> None:
    assert acquire(db, "a", now=10_000)
    assert not acquire(db, "b", now=10_999)  # one millisecond before expiry
    assert acquire(db, "b", now=11_000)
    assert current(db) == Lease("relay", "b", 12_000, 11_000)
    assert not renew(db, "a", now=11_001)
    assert not acquire(db, "a", now=11_001)
    assert current(db) == Lease("relay", "b", 12_000, 11_000)


def test_only_the_holder_renews_and_not_after_expiry(db: Database) -> None:
    assert acquire(db, "a", now=10_000)
    assert not renew(db, "b", now=10_100)
    assert renew(db, "a", now=10_900)
    assert current(db) == Lease("relay", "a", 11_900, 10_000)
    assert not renew(db, "a", now=11_900)  # expired, even though nobody took it yet
    assert not renew(db, "nobody", now=0, name="never-acquired")


def test_only_the_holder_releases_and_then_anyone_acquires_at_once(db: Database) -> None:
    assert acquire(db, "a", now=10_000)
    assert not release(db, "b")
    assert current(db) is not None
    assert release(db, "a")
    assert current(db) is None
    assert not release(db, "a")
    assert acquire(db, "b", now=10_001)
    assert current(db) == Lease("relay", "b", 11_001, 10_001)


@pytest.mark.parametrize("expired", [False, True], ids=["free", "expired"])
def test_racing_processes_get_one_winner(database_url: str, db: Database, expired: bool) -> None:
    if expired:
        assert acquire(db, "old", now=0)
    # One engine per contender, as separate processes have: no shared in-process lock.
    contenders = [open_database(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(contenders))
    won: list[str] = []

    def contend(index: int, database: Database) -> None:
        barrier.wait()
        if acquire(database, f"p{index}", now=50_000):
            won.append(f"p{index}")

    threads = [threading.Thread(target=contend, args=(i, d)) for i, d in enumerate(contenders)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for database in contenders:
            database.dispose()
    assert len(won) == 1, won
    lease = current(db)
    assert lease is not None and lease.holder == won[0]
