"""What the tenant's policy rules say about a run between two steps.

A rule change is found durably, without a snapshot of the rules a run started with: a
rule that applies to the run (tenant-scoped, or scoped to its agent) and whose
``updated_at_ms`` is after the run's *baseline* changed under it. The baseline is the
later of the run's start (its first claim) and the end of its last pause: whoever resumed
a pause accepted the rules as they were then. Before its first step, a change since the
run's submission counts only if the run's plan, judged as at submission, now breaks it
with BLOCK. Every change of a rule (params, enforcement,
status) bumps its version and ``updated_at_ms`` (``domain.policy.bump``), a new rule has
it at its creation, so none slips past. A change that turned the rule off (DISABLED or
RETIRED) is POLICY_DISABLED, any other LIMIT_CHANGED.

``require_approval`` rules with BLOCK or WARN enforcement stop the run before a step they
match until an APPROVAL_REQUIRED pause of that very step was resumed; AUDIT (a rule being
trialled) and DISABLED rules never stop one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runkernel.domain.midrun import Finding, ViolationType
from runkernel.domain.outcomes import RunOutcome
from runkernel.domain.pauses import Pause, PauseReason
from runkernel.domain.policy import (
    Enforcement,
    PolicyRule,
    RuleKind,
    RuleStatus,
    Scope,
    check_plan,
)

_STOPPING = frozenset({Enforcement.BLOCK, Enforcement.WARN})


def baseline_ms(started_at_ms: int, pauses: Iterable[Pause]) -> int:
    """Rules as they were at this moment are the ones the run runs under: its start, or
    the end of its last pause."""
    ends = [p.ended_at_ms for p in pauses if p.ended_at_ms is not None]
    return max([started_at_ms, *ends])


def _in_scope(rule: PolicyRule, agent_id: str) -> bool:
    return rule.scope is Scope.TENANT or rule.agent_id == agent_id


def changed_rules(
    rules: Iterable[PolicyRule],
    agent_id: str,
    since_ms: int,
    *,
    unstarted: RunOutcome | None = None,
) -> list[Finding]:
    """LIMIT_CHANGED / POLICY_DISABLED for each rule of the run changed after ``since_ms``
    (``rules``: all the tenant's, retired ones included).

    A run that has not started (``unstarted``: its plan and budget) has done nothing a
    changed rule could weigh on: a change counts only if its plan, checked as at
    submission, now breaks the rule with BLOCK — else a tenant editing its rules would
    pause every run it has queued."""
    found = []
    for rule in rules:
        if not _in_scope(rule, agent_id) or rule.updated_at_ms <= since_ms:
            continue
        if unstarted is not None and not check_plan([rule], unstarted).blocking:
            continue
        off = rule.status is RuleStatus.RETIRED or rule.enforcement is Enforcement.DISABLED
        kind = ViolationType.POLICY_DISABLED if off else ViolationType.LIMIT_CHANGED
        state = "retired" if rule.status is RuleStatus.RETIRED else rule.enforcement.value
        found.append(
            Finding(
                kind,
                f"rule {rule.id} ({rule.kind.value}) changed to v{rule.version} ({state}) "
                "while the run ran",
            )
        )
    return found


def approval_rules(
    rules: Iterable[PolicyRule], agent_id: str, skill: str, params: Any
) -> list[PolicyRule]:
    """The require_approval rules that stop a step of ``skill`` with rendered ``params``."""
    return [
        r
        for r in rules
        if r.kind is RuleKind.REQUIRE_APPROVAL
        and r.status is RuleStatus.ACTIVE
        and r.enforcement in _STOPPING
        and _in_scope(r, agent_id)
        and matches(r.params, skill, params)
    ]


def matches(rule_params: Mapping[str, Any], skill: str, params: Any) -> bool:
    if skill not in rule_params.get("skills", ()):
        return False
    given = params if isinstance(params, Mapping) else {}
    wanted = rule_params.get("params") or {}
    if any(name not in given or given[name] != value for name, value in wanted.items()):
        return False
    prefix = rule_params.get("url_prefix")
    url = given.get("url")
    return prefix is None or (isinstance(url, str) and url.startswith(prefix))


def approved_steps(pauses: Iterable[Pause]) -> frozenset[int]:
    """Steps an APPROVAL_REQUIRED pause was opened before and that were then resumed."""
    return frozenset(
        p.step_index
        for p in pauses
        if p.reason is PauseReason.APPROVAL_REQUIRED
        and p.outcome == "resumed"
        and p.step_index is not None
    )


def approval_findings(
    rules: Iterable[PolicyRule],
    agent_id: str,
    *,
    step_index: int,
    skill: str,
    params: Any,
    approved: frozenset[int],
) -> list[Finding]:
    if step_index in approved:
        return []
    return [
        Finding(
            ViolationType.APPROVAL_REQUIRED,
            f"rule {r.id} v{r.version}: step {step_index} ({skill}) needs an admin's approval",
        )
        for r in approval_rules(rules, agent_id, skill, params)
    ]
