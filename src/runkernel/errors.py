"""The one exception tree of runkernel. Every error has a stable ``code``.

RunkernelError                      base; code ``internal``
├── ConfigurationError              settings that cannot work together
│   └── RACDurabilityError          test/prod with the audit contract on but no durable store
├── ValidationError                 bad input from a caller (HTTP 422)
│   ├── PlanValidationError         a plan that cannot run (unknown skill, bad template, …)
│   ├── QueryValidationError        a bad query parameter (unknown filter value, limit)
│   └── PayloadTooLargeError        a body or plan over the size limit (HTTP 413)
├── AuthenticationError             missing or unknown API key (HTTP 401)
├── PermissionDeniedError           key lacks the role for the operation (HTTP 403)
│   └── PolicyDeniedError           a BLOCK policy rule refused the run's plan at submission
├── NotFoundError                   nothing of that id visible to this tenant (HTTP 404)
├── ConflictError                   the operation does not fit the current state (HTTP 409)
├── RateLimitedError                too many requests for a key or tenant (HTTP 429)
├── InvariantError                  a lifecycle rule would be broken (a bug, never user input)
│   ├── PhaseStatusInvariantError   a status not allowed in a phase
│   └── IllegalTransitionError      a phase change that is not one step forward or to FAILED
├── LeaseLostError                  a worker no longer holds the run it writes to
├── SkillError                      a skill could not do its job (a failed step)
│   └── EgressDeniedError           a skill's HTTP destination is refused by the egress guard
├── StorageError                    the database failed or is not migrated
│   └── StorageUnavailableError     the database cannot take writes (disk full, read-only; 503)
├── TraceSinkError                  the observability sink did not take a trace
└── TransactionFailed               the atomic completion rolled back (phase, partial results)
"""

from __future__ import annotations


class RunkernelError(Exception):
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def details(self) -> dict[str, object]:
        """Fields the API adds to ``{"error": {"code", "message"}}`` for this error."""
        return {}


class ConfigurationError(RunkernelError):
    code = "configuration_error"


class ValidationError(RunkernelError):
    code = "validation_error"


class PlanValidationError(ValidationError):
    code = "invalid_plan"


class QueryValidationError(ValidationError):
    """One code for every bad query parameter, whether the API's own parsing or a
    service's check found it."""

    code = "invalid_query"


class PayloadTooLargeError(ValidationError):
    code = "payload_too_large"


class AuthenticationError(RunkernelError):
    code = "unauthenticated"


class PermissionDeniedError(RunkernelError):
    code = "permission_denied"


class PolicyDeniedError(PermissionDeniedError):
    """The refused run is stored (failed_policy, with its governance record): ``run_id``
    names it, ``violations`` are the BLOCK violations that refused it."""

    code = "policy_denied"

    def __init__(self, message: str, *, run_id: str, violations: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.violations = violations

    def details(self) -> dict[str, object]:
        return {"run_id": self.run_id, "violations": self.violations}


class NotFoundError(RunkernelError):
    code = "not_found"


class ConflictError(RunkernelError):
    code = "conflict"


class RateLimitedError(RunkernelError):
    """``retry_after_s`` is how long until the bucket has a token again."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class InvariantError(RunkernelError):
    code = "invariant_violated"


class PhaseStatusInvariantError(InvariantError):
    code = "phase_status_invariant"


class IllegalTransitionError(InvariantError):
    code = "illegal_transition"


class LeaseLostError(RunkernelError):
    code = "lease_lost"


class SkillError(RunkernelError):
    code = "skill_error"


class EgressDeniedError(SkillError):
    code = "egress_denied"


class StorageError(RunkernelError):
    code = "storage_error"


class StorageUnavailableError(StorageError):
    code = "storage_unavailable"


class TraceSinkError(RunkernelError):
    code = "trace_sink_error"


class TransactionFailed(RunkernelError):
    """The completion transaction rolled back: nothing of it is visible.

    ``phase`` is where it failed, ``partial_results`` what had been done before (and has
    been rolled back or compensated), ``cause`` the original exception."""

    code = "transaction_failed"

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        partial_results: dict[str, object],
        cause: BaseException | None,
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.partial_results = partial_results
        self.cause = cause


class RACDurabilityError(ConfigurationError):
    code = "rac_durability"
