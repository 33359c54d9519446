"""The small protocols the service layer needs from the outside world."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from runkernel.domain.records import Agent, Claim, Principal, Role, Run, StepRecord, Tenant
from runkernel.domain.runs import Transition
from runkernel.domain.skills import SkillContext, SkillResult


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SkillCatalog(Protocol):
    """What the kernel needs of a skill registry."""

    def names(self) -> list[str]: ...

    def validate(self, name: str, params: Mapping[str, Any]) -> None:
        """Raise ``PlanValidationError`` if ``name`` is unknown or its params cannot work.

        Params that are (or contain) ``{{…}}`` templates are checked only for shape, since
        their values are known at run time.
        """

    def invoke(self, name: str, params: Mapping[str, Any], context: SkillContext) -> SkillResult:
        """Call the skill. A raised ``SkillError`` or ``SkillResult.error`` fails the step;
        any other exception is turned into a ``SkillResult`` with ``error`` set."""


class TenantRepository(Protocol):
    def add(self, tenant: Tenant) -> None: ...
    def get(self, tenant_id: str) -> Tenant | None: ...
    def get_by_name(self, name: str) -> Tenant | None: ...
    def add_key(
        self, *, key_id: str, tenant_id: str, key_hash: str, prefix: str, role: Role, now_ms: int
    ) -> None: ...
    def principal_for(self, key_hash: str) -> tuple[Principal, str] | None: ...


class AgentRepository(Protocol):
    def add(self, agent: Agent) -> None: ...
    def get(self, tenant_id: str, agent_id: str) -> Agent | None: ...
    def get_by_name(self, tenant_id: str, name: str) -> Agent | None: ...
    def for_tenant(self, tenant_id: str) -> list[Agent]: ...


class RunRepository(Protocol):
    def add(self, run: Run, transitions: Sequence[Transition]) -> None: ...
    def get(self, tenant_id: str, run_id: str, *, details: bool = True) -> Run | None: ...
    def get_for_worker(self, run_id: str) -> Run | None: ...
    def find_by_idempotency_key(self, tenant_id: str, key: str) -> Run | None: ...
    def search(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Run]: ...
    def steps(self, run_id: str) -> list[StepRecord]: ...
    def request_cancel(self, tenant_id: str, run_id: str, now_ms: int) -> bool: ...
    def cancel_queued(self, run: Run, transition: Transition) -> bool: ...
    def notify_new_runs(self) -> None: ...
    def claim(self, worker_id: str, limit: int, now_ms: int, lease_ms: int) -> list[Run]: ...
    def renew_lease(self, claim: Claim, now_ms: int, lease_ms: int) -> bool: ...
    def release(self, claim: Claim, now_ms: int) -> bool: ...
    def record_step(self, claim: Claim, step: StepRecord, *, now_ms: int) -> bool: ...
    def finish(
        self,
        claim: Claim,
        transitions: Sequence[Transition],
        *,
        output: Any = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None: ...


class UnitOfWork(Protocol):
    """One transaction: rolled back on exit unless :meth:`commit` was called."""

    @property
    def tenants(self) -> TenantRepository: ...
    @property
    def agents(self) -> AgentRepository: ...
    @property
    def runs(self) -> RunRepository: ...

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def after_commit(self, hook: Callable[[], None]) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork: ...


class WakeupSignal(Protocol):
    """Tells idle workers that a run became claimable; a hint, never the source of truth."""

    def notify(self) -> None: ...

    def wait(self, timeout: float) -> bool: ...

    def clear(self) -> None: ...
