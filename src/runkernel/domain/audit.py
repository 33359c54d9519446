"""The runtime audit contract (RAC): what had to happen for a run, what did, and the verdict.

At run creation (T0) the kernel declares *expectations*: action ``A`` of domain ``D`` must
happen by a deadline. Domain facades report *acks* (SUCCESS, FAILED, ROLLED_BACK), append
only: a rollback never erases the SUCCESS ack it undoes, it adds a ROLLED_BACK ack for the
same key. :func:`reconcile` compares the two as **multisets** of ``(domain, action)`` keys
(DESIGN invariant 5):

- effective acks = SUCCESS acks not undone by a ROLLED_BACK ack. A ROLLED_BACK ack made by
  :func:`rolled_back` names the ack it undoes (``metadata["rolls_back"]``) and cancels
  exactly that one, if present: when acks are written inside the transaction that rolled
  back, the SUCCESS ack is gone already and the retry's new SUCCESS ack must still count
  (recording the same rollback twice is harmless too). A ROLLED_BACK ack naming no ack
  cancels the latest SUCCESS of its key. Either way a count never goes below zero;
- missing = expected − effective (an action rolled back is missing again);
- drift = effective − expected (an action acked twice when expected once is drift);
- failed = the key of every FAILED ack (a later success does not erase a failure);
- invalid = the key of every expectation without a deadline;
- stale = ``orchestrator/finalize_run`` is expected, is missing, and ``now_ms`` is past the
  deadline of one of its expectations (the run never finished).

Status precedence: STALE > INCOMPLETE (anything missing, drift, failed or invalid) >
COMPLETE; a result is clean exactly when it is COMPLETE. Key lists are sorted and keep
repeats. Everything here is pure: time comes in as ``now_ms``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from runkernel.domain.ids import new_id
from runkernel.domain.storable import check_storable

ActionKey = tuple[str, str]
ROLLS_BACK = "rolls_back"  # metadata key of a ROLLED_BACK ack: the id of the ack it undoes

CREATE_INCIDENT: ActionKey = ("incidents", "create_incident")
EVALUATE_POLICY: ActionKey = ("policies", "evaluate_policy")
START_TRACE: ActionKey = ("logs", "start_trace")
COMPLETE_TRACE: ActionKey = ("logs", "complete_trace")
FINALIZE_RUN: ActionKey = ("orchestrator", "finalize_run")  # the liveness meta-expectation
STANDARD_EXPECTATIONS: tuple[ActionKey, ...] = (
    CREATE_INCIDENT,
    EVALUATE_POLICY,
    START_TRACE,
    COMPLETE_TRACE,
    FINALIZE_RUN,
)


class ExpectationStatus(StrEnum):
    PENDING = "PENDING"
    ACKED = "ACKED"
    MISSING = "MISSING"
    FAILED = "FAILED"


class AckStatus(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"


class ReconciliationStatus(StrEnum):
    COMPLETE = "COMPLETE"
    INCOMPLETE = "INCOMPLETE"
    STALE = "STALE"


@dataclass(frozen=True)
class AuditExpectation:
    id: str
    run_id: str
    domain: str
    action: str
    status: ExpectationStatus
    deadline_ms: int | None
    created_at_ms: int
    acked_at_ms: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tenant_id: str | None = None

    def __post_init__(self) -> None:
        check_storable(dict(self.metadata))

    def key(self) -> ActionKey:
        return (self.domain, self.action)

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditExpectation:
        return cls(
            **{
                **data,
                "status": ExpectationStatus(data["status"]),
                "metadata": dict(data.get("metadata") or {}),
            }
        )


@dataclass(frozen=True)
class DomainAck:
    """A domain's report on one action. ``rolled_back`` is true exactly on ROLLED_BACK acks."""

    id: str
    run_id: str
    domain: str
    action: str
    status: AckStatus
    result_id: str | None
    error: str | None
    rolled_back: bool
    rollback_reason: str | None
    created_at_ms: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tenant_id: str | None = None

    def __post_init__(self) -> None:
        if self.rolled_back != (self.status is AckStatus.ROLLED_BACK):
            raise ValueError("rolled_back must be set exactly on ROLLED_BACK acks")
        check_storable(dict(self.metadata))

    def key(self) -> ActionKey:
        return (self.domain, self.action)

    def is_success(self) -> bool:
        return self.status is AckStatus.SUCCESS

    def is_rolled_back(self) -> bool:
        return self.status is AckStatus.ROLLED_BACK

    @property
    def rolls_back_id(self) -> str | None:
        """On a ROLLED_BACK ack, the id of the ack it undoes (when it names one)."""
        target = self.metadata.get(ROLLS_BACK) if self.is_rolled_back() else None
        return target if isinstance(target, str) else None

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainAck:
        return cls(
            **{
                **data,
                "status": AckStatus(data["status"]),
                "metadata": dict(data.get("metadata") or {}),
            }
        )


@dataclass(frozen=True)
class ReconciliationResult:
    run_id: str
    status: ReconciliationStatus
    missing_actions: tuple[ActionKey, ...]
    drift_actions: tuple[ActionKey, ...]
    failed_actions: tuple[ActionKey, ...]
    stale_run: bool
    invalid: tuple[ActionKey, ...]
    reconciled_at_ms: int
    expected_count: int
    acked_count: int  # effective acks: successes not rolled back

    def is_clean(self) -> bool:
        return self.status is ReconciliationStatus.COMPLETE

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconciliationResult:
        keys = ("missing_actions", "drift_actions", "failed_actions", "invalid")
        return cls(
            **{
                **data,
                "status": ReconciliationStatus(data["status"]),
                **{name: tuple((str(d), str(a)) for d, a in data[name]) for name in keys},
            }
        )


def _to_json(record: AuditExpectation | DomainAck | ReconciliationResult) -> dict[str, Any]:
    """Only JSON types, so ``from_dict(json.loads(json.dumps(to_dict())))`` is equal."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, StrEnum):
            value = value.value
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = [list(key) for key in value]
        out[f.name] = value
    return out


def create_run_expectations(
    run_id: str,
    *,
    tenant_id: str | None,
    run_timeout_ms: int,
    grace_period_ms: int,
    now_ms: int,
) -> list[AuditExpectation]:
    """The five standard expectations of a run, all due at ``now + timeout + grace``."""
    deadline = now_ms + run_timeout_ms + grace_period_ms
    base = new_id("aex")  # one id stem, so (created_at_ms, id) keeps the declared order
    return [
        AuditExpectation(
            id=f"{base}{i}",
            run_id=run_id,
            tenant_id=tenant_id,
            domain=domain,
            action=action,
            status=ExpectationStatus.PENDING,
            deadline_ms=deadline,
            created_at_ms=now_ms,
        )
        for i, (domain, action) in enumerate(STANDARD_EXPECTATIONS)
    ]


def create_domain_ack(
    run_id: str,
    domain: str,
    action: str,
    *,
    status: AckStatus = AckStatus.SUCCESS,
    result_id: str | None = None,
    error: str | None = None,
    tenant_id: str | None = None,
    now_ms: int,
    metadata: Mapping[str, Any] | None = None,
) -> DomainAck:
    if status is AckStatus.ROLLED_BACK:
        raise ValueError("use rolled_back() to undo an ack")
    return DomainAck(
        id=new_id("ack"),
        run_id=run_id,
        tenant_id=tenant_id,
        domain=domain,
        action=action,
        status=status,
        result_id=result_id,
        error=error,
        rolled_back=False,
        rollback_reason=None,
        created_at_ms=now_ms,
        metadata=dict(metadata or {}),
    )


def rolled_back(ack: DomainAck, reason: str, now_ms: int) -> DomainAck:
    """The ROLLED_BACK ack that undoes ``ack``: a new record, the original stays."""
    if not ack.is_success():
        raise ValueError(f"only a SUCCESS ack can be rolled back, not {ack.status.value}")
    return replace(
        ack,
        id=new_id("ack"),
        status=AckStatus.ROLLED_BACK,
        rolled_back=True,
        rollback_reason=reason,
        created_at_ms=now_ms,
        metadata={**ack.metadata, ROLLS_BACK: ack.id},
    )


def surviving_successes(acks: Iterable[DomainAck]) -> list[DomainAck]:
    """The SUCCESS acks no ROLLED_BACK ack undoes, oldest first (rules: module docstring)."""
    ordered = sorted(acks, key=lambda a: (a.created_at_ms, a.id))
    survivors = {a.id: a for a in ordered if a.is_success()}
    for undo in (a for a in ordered if a.is_rolled_back()):
        target = undo.rolls_back_id
        if target is None:
            same_key = [a.id for a in survivors.values() if a.key() == undo.key()]
            target = same_key[-1] if same_key else None
        if target is not None and target in survivors and survivors[target].key() == undo.key():
            del survivors[target]
    return list(survivors.values())


def effective_acks(acks: Iterable[DomainAck]) -> Counter[ActionKey]:
    """How many times each action effectively happened."""
    return Counter(a.key() for a in surviving_successes(acks))


def reconcile(
    expectations: Iterable[AuditExpectation], acks: Iterable[DomainAck], *, now_ms: int
) -> ReconciliationResult:
    """The verdict on one run; the rules are in this module's docstring."""
    expectations = list(expectations)
    acks = list(acks)
    if not expectations and not acks:
        raise ValueError("nothing to reconcile: no expectations and no acks")
    run_id = expectations[0].run_id if expectations else acks[0].run_id
    expected = Counter(e.key() for e in expectations)
    effective = effective_acks(acks)
    missing = expected - effective
    drift = effective - expected
    failed = [a.key() for a in acks if a.status is AckStatus.FAILED]
    invalid = [e.key() for e in expectations if e.deadline_ms is None]
    stale = missing[FINALIZE_RUN] > 0 and any(
        e.deadline_ms is not None and now_ms > e.deadline_ms
        for e in expectations
        if e.key() == FINALIZE_RUN
    )
    if stale:
        status = ReconciliationStatus.STALE
    elif missing or drift or failed or invalid:
        status = ReconciliationStatus.INCOMPLETE
    else:
        status = ReconciliationStatus.COMPLETE
    return ReconciliationResult(
        run_id=run_id,
        status=status,
        missing_actions=tuple(sorted(missing.elements())),
        drift_actions=tuple(sorted(drift.elements())),
        failed_actions=tuple(sorted(failed)),
        stale_run=stale,
        invalid=tuple(sorted(invalid)),
        reconciled_at_ms=now_ms,
        expected_count=len(expectations),
        acked_count=sum(effective.values()),
    )


def settle_expectations(
    expectations: Sequence[AuditExpectation], acks: Iterable[DomainAck]
) -> list[AuditExpectation]:
    """Each expectation's final status once its run is reconciled, in the same order.

    Per key, the first expectations (by creation) are ACKED by the effective acks, earliest
    first; the rest are FAILED when the key has a FAILED ack, MISSING otherwise.
    """
    acks = list(acks)
    pool: dict[ActionKey, list[DomainAck]] = {}
    for ack in surviving_successes(acks):
        pool.setdefault(ack.key(), []).append(ack)
    failed = {a.key() for a in acks if a.status is AckStatus.FAILED}
    order = sorted(range(len(expectations)), key=lambda i: expectations[i].created_at_ms)
    settled = list(expectations)
    for i in order:
        exp = expectations[i]
        if pool.get(exp.key()):
            ack = pool[exp.key()].pop(0)
            settled[i] = replace(exp, status=ExpectationStatus.ACKED, acked_at_ms=ack.created_at_ms)
        else:
            status = ExpectationStatus.FAILED if exp.key() in failed else ExpectationStatus.MISSING
            settled[i] = replace(exp, status=status, acked_at_ms=None)
    return settled


def expectations_now(
    expectations: Sequence[AuditExpectation], acks: Iterable[DomainAck], *, now_ms: int
) -> list[AuditExpectation]:
    """Each expectation as it stands at ``now_ms``, for showing next to a live verdict:
    ACKED (with the ack's time) as soon as an effective ack matches it and FAILED as soon
    as only a FAILED ack does, as :func:`settle_expectations` would settle them; an
    unmatched one is PENDING until its deadline and MISSING after it. Whatever a sweep
    stored, the answer follows the acks, so it always agrees with :func:`reconcile`."""
    settled = settle_expectations(expectations, acks)
    return [
        replace(e, status=ExpectationStatus.PENDING)
        if e.status is ExpectationStatus.MISSING
        and (e.deadline_ms is None or now_ms <= e.deadline_ms)
        else e
        for e in settled
    ]
