"""How close a run came to its budget, as a level, and when a change of level is news.

Levels from the peak budget ratio (see :func:`runkernel.domain.outcomes.peak_ratio`):
< 0.85 NORMAL, [0.85, 0.95) NEAR_THRESHOLD, [0.95, 1.0) AT_RISK, ≥ 1.0 VIOLATED. A ratio
of exactly 1.0 is VIOLATED because the executor treats ``used >= limit`` as spent. A run
stopped for its budget or by policy (status failed_policy, which includes a T0 denial) is
VIOLATED whatever its ratios say; a run without limits is NORMAL.
"""

from __future__ import annotations

from enum import StrEnum

from runkernel.domain.outcomes import RunOutcome, peak_ratio
from runkernel.domain.runs import RunStatus

NEAR_THRESHOLD = 0.85
AT_RISK = 0.95
VIOLATED = 1.0


class RiskLevel(StrEnum):
    NORMAL = "NORMAL"
    NEAR_THRESHOLD = "NEAR_THRESHOLD"
    AT_RISK = "AT_RISK"
    VIOLATED = "VIOLATED"


_ORDER = tuple(RiskLevel)


def level_of(ratio: float) -> RiskLevel:
    """The level of one budget ratio."""
    if ratio >= VIOLATED:
        return RiskLevel.VIOLATED
    if ratio >= AT_RISK:
        return RiskLevel.AT_RISK
    if ratio >= NEAR_THRESHOLD:
        return RiskLevel.NEAR_THRESHOLD
    return RiskLevel.NORMAL


def risk_level(outcome: RunOutcome) -> RiskLevel:
    if outcome.status is RunStatus.FAILED_POLICY or outcome.error_code == "budget_exceeded":
        return RiskLevel.VIOLATED
    peak = peak_ratio(outcome)
    if peak is None:
        return RiskLevel.NORMAL
    level = level_of(peak[1])
    if level is RiskLevel.VIOLATED and peak[1] <= 1.0 and outcome.succeeded:
        # A run that finished using exactly its limit (say all of its max_steps) spent its
        # whole budget without breaking it: at risk, not violated.
        return RiskLevel.AT_RISK
    return level


def crossed(before: RiskLevel, after: RiskLevel) -> bool:
    """True when ``after`` is a higher level than ``before``: a ``threshold.exceeded`` event.
    Falling back (or staying) is not news."""
    return _ORDER.index(after) > _ORDER.index(before)
