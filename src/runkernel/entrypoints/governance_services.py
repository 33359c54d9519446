"""The governance use-case services over a built kernel, for the API and the CLI.

They are thin and stateless (a unit-of-work factory, a clock, the audit store), so they
are built here from the kernel's parts rather than wired into the composition root.
"""

from __future__ import annotations

from dataclasses import dataclass

from runkernel.bootstrap import Kernel
from runkernel.services.audit import AuditService
from runkernel.services.incidents import IncidentService
from runkernel.services.lessons import LessonService
from runkernel.services.policies import PolicyService


@dataclass(frozen=True, slots=True)
class GovernanceServices:
    incidents: IncidentService
    policies: PolicyService
    lessons: LessonService
    audit: AuditService

    @classmethod
    def of(cls, kernel: Kernel) -> GovernanceServices:
        return cls(
            # The relay wake-up lets an incident.resolved event leave right after commit.
            incidents=IncidentService(kernel.uow, kernel.clock, kernel.relay_wakeup),
            policies=PolicyService(kernel.uow, kernel.clock),
            lessons=LessonService(kernel.uow, kernel.clock),
            audit=AuditService(kernel.uow, kernel.audit, kernel.clock),
        )
