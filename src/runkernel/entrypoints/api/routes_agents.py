"""``/api/v1/agents``: a tenant's agents and their budgets."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from runkernel.entrypoints.api import views
from runkernel.entrypoints.api.auth import KernelDep, PrincipalDep
from runkernel.entrypoints.api.ids import require_id
from runkernel.entrypoints.api.schemas import (
    ERROR_RESPONSES,
    AgentCreate,
    AgentList,
    AgentOut,
    AgentPatch,
    error_doc,
)
from runkernel.errors import NotFoundError
from runkernel.services.tenancy import DEFAULT

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, responses={409: error_doc("an agent of that name exists")})
def create_agent(
    body: AgentCreate,
    principal: PrincipalDep,
    kernel: KernelDep,
    request: Request,
    response: Response,
) -> AgentOut:
    """Create an agent with a spending budget across all its runs."""
    limit = body.max_concurrent_runs if "max_concurrent_runs" in body.model_fields_set else DEFAULT
    agent = kernel.tenancy.create_agent(
        principal, body.name, body.budget_usd, on_budget=body.on_budget, max_concurrent_runs=limit
    )
    response.headers["Location"] = str(request.url_for("get_agent", agent_id=agent.id))
    return views.agent(agent)


@router.get("")
def list_agents(principal: PrincipalDep, kernel: KernelDep) -> AgentList:
    return AgentList(agents=[views.agent(a) for a in kernel.tenancy.list_agents(principal)])


@router.get("/{agent_id}")
def get_agent(agent_id: str, principal: PrincipalDep, kernel: KernelDep) -> AgentOut:
    agent = kernel.tenancy.get_agent(principal, require_id(agent_id, "agent"))
    if agent is None:
        raise NotFoundError(f"no agent {agent_id!r}")
    return views.agent(agent)


@router.patch("/{agent_id}", responses={404: error_doc("no such agent")})
def change_agent(
    agent_id: str, body: AgentPatch, principal: PrincipalDep, kernel: KernelDep
) -> AgentOut:
    """Change an agent's budget, on_budget or max_concurrent_runs (admin keys). A budget
    below what is spent is allowed and simply refuses further reservations."""
    limit = body.max_concurrent_runs if "max_concurrent_runs" in body.model_fields_set else DEFAULT
    agent = kernel.tenancy.change_agent(
        principal,
        require_id(agent_id, "agent"),
        budget_usd=body.budget_usd,
        on_budget=body.on_budget,
        max_concurrent_runs=limit,
    )
    return views.agent(agent)
