"""Events only after commit (issue 3 acceptance; DESIGN invariant 2).

A completion that rolls back publishes nothing — not even with a relay running while its
transaction is open — and the run's events arrive once it commits: run.completed or
run.failed, policy.evaluated, trace.completed (and incident.created for a failure), each
id once after a ``Deduplicator``, in the outbox's order for the run.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from conftest import ECHO_PLAN, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.events import Deduplicator, Event
from support.governance import (
    ACKED_BEFORE,
    COMPLETION_TOPICS,
    FAILING_PLAN,
    InjectedFault,
    assert_nothing_final,
    drive,
    snapshot,
)
from support.relay_process import BusLog
from support.workers import rows


@pytest.fixture
def ekernel(database_url: str) -> Iterator[Kernel]:
    # No completion retries: a failed completion leaves the run to lease expiry, so the
    # test can look at (and relay) the state between the rollback and the next attempt.
    k = build_kernel(make_settings(database_url, completion_retries=0, lease_s=0.5))
    k.migrate()
    yield k
    k.close()


class RelayDuringCommit:
    """At "commit" of the first completion, a relay pass runs in another thread while the
    completion's transaction is open (on SQLite it waits for the writer); then the
    completion fails."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.fired = False
        self.thread: threading.Thread | None = None
        self.relayed: list[int] = []

    def __call__(self, point: str) -> None:
        if point != "commit" or self.fired:
            return
        self.fired = True
        self.thread = threading.Thread(target=lambda: self.relayed.append(self._drain()))
        self.thread.start()
        self.thread.join(timeout=2.0)  # done on PostgreSQL, waiting on the lock on SQLite
        raise InjectedFault("injected fault at commit")

    def _drain(self) -> int:
        total = 0
        while n := self.kernel.relay.relay_once():
            total += n
        return total


def _drain(kernel: Kernel) -> int:
    total = 0
    while n := kernel.relay.relay_once():
        total += n
    return total


def _outbox(kernel: Kernel, run_id: str) -> list[tuple[str, str]]:
    return [
        (r.id, r.topic)
        for r in rows(
            kernel, "SELECT id, topic FROM outbox WHERE run_id = :r ORDER BY seq", r=run_id
        )
    ]


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_events_are_published_only_after_commit_once_each_in_order(
    ekernel: Kernel, outcome: str
) -> None:
    kernel = ekernel
    tenant = make_tenant(kernel)
    plan = ECHO_PLAN if outcome == "succeeded" else FAILING_PLAN
    run_id = kernel.runs.submit(tenant.principal, agent_id=tenant.agent.id, plan=plan).run.id
    _, log = BusLog.on(kernel.bus)
    dedupe = Deduplicator()
    handled: list[Event] = []
    kernel.bus.subscribe("*", lambda e: handled.append(e) if dedupe.first_time(e.id) else None)

    hook = RelayDuringCommit(kernel)
    kernel.completion.fault = hook
    assert drive(kernel, run_id, "worker-1") == "completion_failed"
    assert hook.thread is not None
    hook.thread.join(timeout=30)
    assert not hook.thread.is_alive()

    # Rolled back: nothing final, ROLLED_BACK acks, and only the start's events exist.
    after = snapshot(kernel, run_id)
    assert_nothing_final(after)
    assert after.acks_with("ROLLED_BACK") == Counter(ACKED_BEFORE["commit"])
    started = [t for _, t in _outbox(kernel, run_id)]
    assert sorted(started) == ["run.started", "trace.started"]
    _drain(kernel)
    assert [e.topic for e in log.events if e.run_id == run_id] == started
    assert not [e for e in log.events if e.topic in COMPLETION_TOPICS]

    # The next attempt (once the lease has run out) completes and commits the events.
    assert drive(kernel, run_id, "worker-2") == outcome
    assert hook.fired  # the fault fired once; the second completion passed
    written = _outbox(kernel, run_id)
    assert _drain(kernel) == len(written) - 2
    assert kernel.relay.pending() == 0

    # At least once: make the relay deliver everything again (as after a relay crash).
    with kernel.db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE outbox SET published_at_ms = NULL, claimed_by = NULL,"
                " claimed_until_ms = NULL WHERE run_id = :r"
            ),
            {"r": run_id},
        )
    assert _drain(kernel) == len(written)

    raw = [e for e in log.events if e.run_id == run_id]
    assert Counter(e.id for e in raw) == Counter({event_id: 2 for event_id, _ in written})
    mine = [e for e in handled if e.run_id == run_id]
    # Each id once after dedupe, in the outbox's seq order for the run.
    assert [(e.id, e.topic) for e in mine] == written
    topics = Counter(t for _, t in written)  # no threshold.exceeded: no budget was near
    final_topic = "run.completed" if outcome == "succeeded" else "run.failed"
    expected = {
        "run.started": 1,
        "trace.started": 1,
        "policy.evaluated": 1,
        "trace.completed": 1,
        final_topic: 1,
    }
    if outcome == "failed":
        expected["incident.created"] = 1
    assert topics == Counter(expected)
    assert [t for _, t in written][-1] == final_topic  # the run's verdict comes last

    by_topic = {e.topic: e for e in mine}
    assert by_topic[final_topic].payload["status"] == outcome
    evaluation = rows(kernel, "SELECT outcome FROM policy_evaluations WHERE run_id = :r", r=run_id)
    assert by_topic["policy.evaluated"].payload["evaluation"]["outcome"] == evaluation[0].outcome
    if outcome == "failed":
        incident = rows(kernel, "SELECT id FROM incidents WHERE run_id = :r", r=run_id)
        assert [r.id for r in incident] == [by_topic["incident.created"].payload["incident"]["id"]]
    assert all(e.tenant_id == tenant.principal.tenant_id for e in mine)
