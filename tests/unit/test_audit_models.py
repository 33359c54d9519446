"""Audit records are immutable and round-trip exactly through JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runkernel.domain.audit import (
    CREATE_INCIDENT,
    AckStatus,
    AuditExpectation,
    DomainAck,
    ExpectationStatus,
    ReconciliationResult,
    ReconciliationStatus,
    create_domain_ack,
    create_run_expectations,
    rolled_back,
)

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
opt_text = st.none() | text
ints = st.integers(min_value=0, max_value=2**62)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
metadata = st.dictionaries(text, json_values, max_size=5)
action_keys = st.lists(st.tuples(text, text), max_size=6).map(tuple)

expectations = st.builds(
    AuditExpectation,
    id=text,
    run_id=text,
    domain=text,
    action=text,
    status=st.sampled_from(ExpectationStatus),
    deadline_ms=st.none() | ints,
    created_at_ms=ints,
    acked_at_ms=st.none() | ints,
    metadata=metadata,
    tenant_id=opt_text,
)
acks = st.sampled_from(AckStatus).flatmap(
    lambda status: st.builds(
        DomainAck,
        id=text,
        run_id=text,
        domain=text,
        action=text,
        status=st.just(status),
        result_id=opt_text,
        error=opt_text,
        rolled_back=st.just(status is AckStatus.ROLLED_BACK),
        rollback_reason=opt_text,
        created_at_ms=ints,
        metadata=metadata,
        tenant_id=opt_text,
    )
)
results = st.builds(
    ReconciliationResult,
    run_id=text,
    status=st.sampled_from(ReconciliationStatus),
    missing_actions=action_keys,
    drift_actions=action_keys,
    failed_actions=action_keys,
    stale_run=st.booleans(),
    invalid=action_keys,
    reconciled_at_ms=ints,
    expected_count=ints,
    acked_count=ints,
)


def _through_json(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


@given(expectations)
def test_expectation_round_trips(exp: AuditExpectation) -> None:
    assert AuditExpectation.from_dict(_through_json(exp.to_dict())) == exp


@given(acks)
def test_ack_round_trips(ack: DomainAck) -> None:
    assert DomainAck.from_dict(_through_json(ack.to_dict())) == ack


@given(results)
def test_result_round_trips(result: ReconciliationResult) -> None:
    again = ReconciliationResult.from_dict(_through_json(result.to_dict()))
    assert again == result
    assert all(isinstance(key, tuple) for key in again.missing_actions + again.invalid)


def test_to_dict_names_every_column_of_the_tables() -> None:
    exp = create_run_expectations("r", tenant_id="t", run_timeout_ms=1, grace_period_ms=1, now_ms=1)
    assert set(exp[0].to_dict()) == {
        "id", "run_id", "tenant_id", "domain", "action", "status",
        "deadline_ms", "created_at_ms", "acked_at_ms", "metadata",
    }  # fmt: skip
    assert exp[0].to_dict()["status"] == "PENDING"


def test_records_are_immutable() -> None:
    ack = create_domain_ack("r", *CREATE_INCIDENT, now_ms=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ack.status = AckStatus.FAILED  # type: ignore[misc]


def test_rolled_back_flag_must_match_the_status() -> None:
    with pytest.raises(ValueError, match="rolled_back"):
        DomainAck("a", "r", "d", "x", AckStatus.SUCCESS, None, None, True, None, 1)
    with pytest.raises(ValueError, match="rolled_back"):
        DomainAck("a", "r", "d", "x", AckStatus.ROLLED_BACK, None, None, False, None, 1)


def test_only_a_success_can_be_rolled_back() -> None:
    failed = create_domain_ack("r", *CREATE_INCIDENT, status=AckStatus.FAILED, now_ms=1)
    with pytest.raises(ValueError, match="SUCCESS"):
        rolled_back(failed, "why", 2)
    with pytest.raises(ValueError, match="rolled_back"):
        create_domain_ack("r", *CREATE_INCIDENT, status=AckStatus.ROLLED_BACK, now_ms=1)


def test_rolled_back_keeps_the_original_and_makes_a_new_record() -> None:
    ack = create_domain_ack("r", *CREATE_INCIDENT, result_id="inc_1", tenant_id="t", now_ms=1)
    undo = rolled_back(ack, "tx failed", 9)
    assert ack.status is AckStatus.SUCCESS and not ack.rolled_back
    assert undo.id != ack.id and undo.created_at_ms == 9
    assert (undo.result_id, undo.tenant_id, undo.key()) == ("inc_1", "t", ack.key())


def test_unstorable_metadata_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        create_domain_ack("r", "d", "a", now_ms=1, metadata={"x": "a\x00b"})
    with pytest.raises(ValueError, match="NaN"):
        create_domain_ack("r", "d", "a", now_ms=1, metadata={"x": float("nan")})
