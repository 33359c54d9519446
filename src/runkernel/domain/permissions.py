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
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from runkernel.domain.records import Principal, Role
from runkernel.errors import PermissionDeniedError


class Permission(StrEnum):
    SUBMIT_RUN = "submit_run"
    READ_RUNS = "read_runs"  # a run, its evaluation and its trace
    CANCEL_RUN = "cancel_run"
    READ_AGENTS = "read_agents"
    CREATE_AGENT = "create_agent"
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


_ANY = frozenset(Role)
_ADMIN = frozenset({Role.ADMIN})

ROLES: Mapping[Permission, frozenset[Role]] = {
    Permission.SUBMIT_RUN: _ANY,
    Permission.READ_RUNS: _ANY,
    Permission.CANCEL_RUN: _ANY,
    Permission.READ_AGENTS: _ANY,
    Permission.CREATE_AGENT: _ADMIN,
    Permission.READ_POLICIES: _ANY,
    Permission.CHANGE_POLICIES: _ADMIN,
    Permission.READ_INCIDENTS: _ANY,
    Permission.ACKNOWLEDGE_INCIDENT: _ANY,
    Permission.RESOLVE_INCIDENT: _ADMIN,
    Permission.READ_LESSONS: _ANY,
    Permission.DEFER_LESSON: _ANY,
    Permission.DISMISS_LESSON: _ADMIN,
    Permission.CONVERT_LESSON: _ADMIN,
    Permission.READ_AUDIT: _ANY,
    Permission.MANAGE_KEYS: _ADMIN,
}


def allows(role: Role, permission: Permission) -> bool:
    return role in ROLES[permission]


def require(principal: Principal, permission: Permission) -> None:
    """Raise ``PermissionDeniedError`` (403) unless the caller's role has ``permission``."""
    if not allows(principal.role, permission):
        needed = " or ".join(sorted(r.value for r in ROLES[permission]))
        raise PermissionDeniedError(
            f"{permission.value.replace('_', ' ')} needs a key of role {needed}; "
            f"this key's role is {principal.role.value}"
        )
