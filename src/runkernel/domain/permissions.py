"""The role table: which key role may do what. The one place a permission is decided.

Every service operation that acts for a caller starts with ``require(principal, P)``;
nothing else compares roles. The README's "Roles" table states the same matrix, and
``tests/integration/test_role_matrix.py`` checks every (role, operation) pair over HTTP.

Why the lines fall where they do: a ``user`` key is what a tenant's agents and apps run
with, so it may do everything a run needs and see everything governance says about its
runs. What sets the rules a user key is held to — agent budgets, policy rules, adopting or
discarding a lesson's proposed rule, closing an incident, and the keys themselves — needs
an ``admin`` key; otherwise a user key could lift the limit that stops it. Acknowledging
an incident ("someone is looking") and deferring a lesson change nothing that binds
anybody, so a user key may do both.

An ``operator`` key belongs to no tenant: it is for the people who run runkernel and acts
only through operator routes that name the tenant they act on. Every permission below acts
inside the caller's own tenant, so an operator has none of them; it gets a permission here
when a route that takes a tenant needs one: reading a tenant and suspending or
reactivating it are an operator's alone.

A suspended tenant's keys keep what lets the tenant see what happened and stop its own
work: every read, and cancelling a run (which starts nothing). Everything else, submitting
first, is refused with ``tenant_suspended`` until an operator reactivates the tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from runkernel.domain.pauses import PauseResumeAuthority, Resumer
from runkernel.domain.records import TENANT_KEY_ROLES, Principal, Role, TenantStatus
from runkernel.errors import PermissionDeniedError


class Permission(StrEnum):
    SUBMIT_RUN = "submit_run"
    READ_RUNS = "read_runs"  # a run, its evaluation and its trace
    CANCEL_RUN = "cancel_run"
    READ_AGENTS = "read_agents"
    CREATE_AGENT = "create_agent"
    CHANGE_AGENT = "change_agent"  # its budget, on_budget, max_concurrent_runs
    READ_POLICIES = "read_policies"
    CHANGE_POLICIES = "change_policies"  # create, change, retire
    READ_INCIDENTS = "read_incidents"
    ACKNOWLEDGE_INCIDENT = "acknowledge_incident"
    RESOLVE_INCIDENT = "resolve_incident"
    READ_LESSONS = "read_lessons"
    DEFER_LESSON = "defer_lesson"
    DISMISS_LESSON = "dismiss_lesson"
    CONVERT_LESSON = "convert_lesson"  # adopts its proposal as a policy rule
    READ_AUDIT = "read_audit"  # a run's audit and the tenant's stored reconciliations
    MANAGE_KEYS = "manage_keys"  # list, create, revoke, rotate
    READ_TENANTS = "read_tenants"  # any tenant's status
    SUSPEND_TENANT = "suspend_tenant"  # suspend and reactivate any tenant
    SET_TENANT_LIMITS = "set_tenant_limits"  # any tenant's monthly cost cap


_TENANT = TENANT_KEY_ROLES  # every key of the tenant, never an operator's
_ADMIN = frozenset({Role.ADMIN})
_OPERATOR = frozenset({Role.OPERATOR})

ROLES: Mapping[Permission, frozenset[Role]] = {
    Permission.SUBMIT_RUN: _TENANT,
    Permission.READ_RUNS: _TENANT,
    Permission.CANCEL_RUN: _TENANT,
    Permission.READ_AGENTS: _TENANT,
    Permission.CREATE_AGENT: _ADMIN,
    Permission.CHANGE_AGENT: _ADMIN,
    Permission.READ_POLICIES: _TENANT,
    Permission.CHANGE_POLICIES: _ADMIN,
    Permission.READ_INCIDENTS: _TENANT,
    Permission.ACKNOWLEDGE_INCIDENT: _TENANT,
    Permission.RESOLVE_INCIDENT: _ADMIN,
    Permission.READ_LESSONS: _TENANT,
    Permission.DEFER_LESSON: _TENANT,
    Permission.DISMISS_LESSON: _ADMIN,
    Permission.CONVERT_LESSON: _ADMIN,
    Permission.READ_AUDIT: _TENANT,
    Permission.MANAGE_KEYS: _ADMIN,
    Permission.READ_TENANTS: _OPERATOR,
    Permission.SUSPEND_TENANT: _OPERATOR,
    Permission.SET_TENANT_LIMITS: _OPERATOR,
}

KEPT_WHEN_SUSPENDED = frozenset(
    {
        Permission.READ_RUNS,
        Permission.CANCEL_RUN,
        Permission.READ_AGENTS,
        Permission.READ_POLICIES,
        Permission.READ_INCIDENTS,
        Permission.READ_LESSONS,
        Permission.READ_AUDIT,
    }
)


# What a key's role makes it over a pause (domain/pauses.py); the key that submitted the
# run is its API_KEY_OWNER besides.
_PAUSE_AUTHORITY = {
    Role.ADMIN: PauseResumeAuthority.TENANT_ADMIN,
    Role.USER: PauseResumeAuthority.TENANT_USER,
    Role.OPERATOR: PauseResumeAuthority.OPERATOR,
}


def resumer(principal: Principal, key_owner: str | None) -> Resumer:
    """The caller as the resumer of a pause of a run submitted by key ``key_owner``."""
    held = {_PAUSE_AUTHORITY[principal.role]}
    if key_owner is not None and principal.key_id == key_owner:
        held.add(PauseResumeAuthority.API_KEY_OWNER)
    return Resumer(actor(principal), frozenset(held))


def actor(principal: Principal) -> str:
    """How a caller is named in what it did to a run (a pause, a resume)."""
    return f"{principal.role.value}:{principal.key_id}"


def allows(role: Role, permission: Permission) -> bool:
    return role in ROLES[permission]


def require(principal: Principal, permission: Permission) -> None:
    """Raise ``PermissionDeniedError`` (403) unless the caller's role has ``permission``
    (and, for a key of a suspended tenant, the permission is one the tenant keeps)."""
    if not allows(principal.role, permission):
        needed = " or ".join(sorted(r.value for r in ROLES[permission]))
        why = f"this key's role is {principal.role.value}"
        if principal.role is Role.OPERATOR:
            why += ", which belongs to no tenant and cannot act inside one"
        raise PermissionDeniedError(
            f"{permission.value.replace('_', ' ')} needs a key of role {needed}; {why}"
        )
    if principal.tenant_status is not TenantStatus.ACTIVE and permission not in (
        KEPT_WHEN_SUSPENDED
    ):
        raise PermissionDeniedError(
            f"the tenant is {principal.tenant_status.value}: {permission.value.replace('_', ' ')} "
            "is refused until an operator reactivates it (its runs, incidents and audit "
            "can still be read)",
            code="tenant_suspended",
        )
