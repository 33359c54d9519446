"""``/api/v1/runs``: submit (T0), search, inspect and cancel runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from runkernel.domain.runs import RunStatus
from runkernel.entrypoints.api import views
from runkernel.entrypoints.api.auth import KernelDep, PrincipalDep
from runkernel.entrypoints.api.ids import cursor_query, require_id
from runkernel.entrypoints.api.schemas import (
    ERROR_RESPONSES,
    ID_PATTERN,
    ResumeIn,
    RunAccepted,
    RunCreate,
    RunDetail,
    RunList,
    error_doc,
)
from runkernel.entrypoints.api.schemas_governance import PolicyDeniedResponse

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=202,
    responses={
        200: {"model": RunAccepted, "description": "the idempotency key named an existing run"},
        403: {
            "model": PolicyDeniedResponse,
            "description": "the key's role may not submit, its tenant is not active, or a "
            "BLOCK policy rule refuses the plan (`policy_denied`: the run is stored as "
            "failed_policy; `run_id` and `violations` say which and why)",
        },
        404: error_doc("no such agent in this tenant"),
        409: error_doc("the idempotency key was used for a different request"),
        413: error_doc("the request body or the plan is over the size limit"),
    },
)
def submit_run(
    body: RunCreate,
    principal: PrincipalDep,
    kernel: KernelDep,
    request: Request,
    response: Response,
) -> RunAccepted:
    """Validate, authorize and enqueue a run: 202 with its id.

    A repeat of the same request with an ``idempotency_key`` already used by this tenant
    answers **200** with the existing run (whatever its status now) and enqueues nothing;
    the key with a different request (agent, plan, budget or metadata) is a **409**
    ``idempotency_conflict``. A run the agent's budget cannot pay for is accepted as
    ``failed_policy`` so the denial stays visible.

    A plan that breaks one of the tenant's BLOCK policy rules (``allowed_skills``,
    ``denied_skills``, ``max_steps``; ``max_cost``, ``max_tokens`` and ``max_duration``
    against the run's budget) is refused: **403** ``policy_denied`` naming each rule and
    version; the run is stored as ``failed_policy`` with its incident and evaluation, and
    nothing of it runs. A repeat with its idempotency key answers the same 403. WARN and
    AUDIT violations are noted in the reason of the run's ``authorized`` transition.
    """
    submitted = kernel.runs.submit(
        principal,
        agent_id=body.agent_id,
        plan=body.plan,
        budget=body.budget.to_budget() if body.budget else None,
        idempotency_key=body.idempotency_key,
        metadata=body.metadata,
    )
    if not submitted.created:
        response.status_code = 200
    response.headers["Location"] = str(request.url_for("get_run", run_id=submitted.run.id))
    return views.accepted(submitted.run)


@router.get("")
def list_runs(
    principal: PrincipalDep,
    kernel: KernelDep,
    status: RunStatus | None = None,
    agent_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, cursor_query("run")] = None,
) -> RunList:
    """Runs of this tenant, newest first, one page at a time."""
    runs, next_cursor = kernel.runs.search(
        principal, status=status, agent_id=agent_id, limit=limit, cursor=cursor
    )
    return RunList(runs=[views.summary(r) for r in runs], next_cursor=next_cursor)


@router.get("/{run_id}")
def get_run(run_id: str, principal: PrincipalDep, kernel: KernelDep) -> RunDetail:
    """A run with its transitions, its steps and the mid-run policy checks that paused or
    ended it (``policy_checks``)."""
    run_id = require_id(run_id, "run")
    run = kernel.runs.get(principal, run_id)
    return views.detail(run, kernel.runs.policy_checks(principal, run_id))


@router.post("/{run_id}/cancel", responses={409: error_doc("the run is already final")})
def cancel_run(run_id: str, principal: PrincipalDep, kernel: KernelDep) -> RunDetail:
    """Cancel a queued run at once; a running one stops at its next step boundary."""
    return views.detail(kernel.runs.cancel(principal, require_id(run_id, "run")))


@router.post(
    "/{run_id}/pause",
    responses={409: error_doc("the run is not running (queued, paused or final)")},
)
def pause_run(run_id: str, principal: PrincipalDep, kernel: KernelDep) -> RunDetail:
    """Pause a running run at its next step boundary (a MANUAL_PAUSE): its worker and
    lease are released; an admin, a user key or the key that submitted it may resume it."""
    return views.detail(kernel.pauses.pause_run(principal, require_id(run_id, "run")))


@router.post(
    "/{run_id}/resume",
    responses={
        403: error_doc("the pause may not be resumed by this key (its reason says who may)"),
        409: error_doc("the run is not paused, or its pause expired"),
    },
)
def resume_run(
    run_id: str, principal: PrincipalDep, kernel: KernelDep, body: ResumeIn | None = None
) -> RunDetail:
    """Resume a paused run: it continues after its last completed step on any worker,
    without a new attempt. A refusal is recorded on the pause with its reason."""
    note = None if body is None else body.note
    return views.detail(kernel.pauses.try_resume(principal, require_id(run_id, "run"), note))


@router.post(
    "/{run_id}/reject",
    responses={
        403: error_doc("the pause may not be decided by this key (its reason says who may)"),
        409: error_doc("the run is not paused"),
    },
)
def reject_run(
    run_id: str, principal: PrincipalDep, kernel: KernelDep, body: ResumeIn | None = None
) -> RunDetail:
    """Reject a paused run instead of resuming it (an approval refused): it ends
    ``failed_policy`` (error ``approval_rejected`` for an APPROVAL_REQUIRED pause, else
    ``rejected``) with its incident, evaluation and trace; the actor and the note are in
    its transitions. Whoever may resume the pause may reject it; a refusal is recorded on
    the pause."""
    note = None if body is None else body.note
    return views.detail(kernel.pauses.reject(principal, require_id(run_id, "run"), note))
