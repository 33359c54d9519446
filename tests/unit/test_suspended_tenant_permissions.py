"""What a suspended tenant's keys keep, for every permission and tenant role: the reads and
cancel pass, everything else is refused with ``tenant_suspended`` (an active tenant's keys
are unaffected)."""

from __future__ import annotations

import pytest

from runkernel.domain.permissions import KEPT_WHEN_SUSPENDED, Permission, allows, require
from runkernel.domain.records import TENANT_KEY_ROLES, Principal, Role, TenantStatus
from runkernel.errors import PermissionDeniedError

CASES = [
    pytest.param(p, r, id=f"{r.value}-{p.value}")
    for p in Permission
    for r in sorted(TENANT_KEY_ROLES)
    if allows(r, p)
]


@pytest.mark.parametrize(("permission", "role"), CASES)
def test_a_suspended_tenant_keeps_reads_and_cancel_only(permission: Permission, role: Role) -> None:
    active = Principal("ten_a", "key_a", role)
    suspended = Principal("ten_a", "key_a", role, TenantStatus.SUSPENDED)
    require(active, permission)
    if permission in KEPT_WHEN_SUSPENDED:
        require(suspended, permission)
    else:
        with pytest.raises(PermissionDeniedError) as refused:
            require(suspended, permission)
        assert refused.value.code == "tenant_suspended"


def test_what_is_kept_is_reading_and_cancelling() -> None:
    assert {p.value for p in KEPT_WHEN_SUSPENDED} == {
        "read_runs",
        "cancel_run",
        "read_agents",
        "read_policies",
        "read_incidents",
        "read_lessons",
        "read_audit",
    }
    assert Permission.SUBMIT_RUN not in KEPT_WHEN_SUSPENDED
