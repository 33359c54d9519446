"""``/api/v1/policies``: a tenant's policy rules. Every change bumps the rule's version;
changes need an admin key; a rule is retired, never erased (evaluations cite it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from runkernel.entrypoints.api import views_governance as views
from runkernel.entrypoints.api.auth import PrincipalDep
from runkernel.entrypoints.api.governance import GovernanceDep
from runkernel.entrypoints.api.ids import require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES, error_doc
from runkernel.entrypoints.api.schemas_governance import PolicyList, PolicyOut
from runkernel.entrypoints.api.schemas_policies import PolicyCreate, PolicyPatch

router = APIRouter(prefix="/api/v1/policies", tags=["policies"], responses=ERROR_RESPONSES)

CHANGE_CONFLICT = error_doc("the rule is retired, or changed by someone else meanwhile")


@router.post(
    "",
    status_code=201,
    responses={
        403: error_doc("the key is not an admin key"),
        404: error_doc("no such agent in this tenant"),
    },
)
def create_policy(
    body: PolicyCreate,
    principal: PrincipalDep,
    services: GovernanceDep,
    request: Request,
    response: Response,
) -> PolicyOut:
    """Create an ACTIVE rule at version 1."""
    rule = services.policies.create(
        principal,
        kind=body.kind,
        params=body.params,
        enforcement=body.enforcement,
        scope=body.scope,
        agent_id=body.agent_id,
    )
    response.headers["Location"] = str(request.url_for("get_policy", rule_id=rule.id))
    return views.policy(rule)


@router.get("")
def list_policies(
    principal: PrincipalDep,
    services: GovernanceDep,
    include_retired: Annotated[bool, Query(description="list RETIRED rules too")] = False,
) -> PolicyList:
    rules = services.policies.rules(principal, include_retired=include_retired)
    return PolicyList(policies=[views.policy(r) for r in rules])


@router.get("/{rule_id}")
def get_policy(rule_id: str, principal: PrincipalDep, services: GovernanceDep) -> PolicyOut:
    return views.policy(services.policies.get(principal, require_id(rule_id, "policy rule")))


@router.patch(
    "/{rule_id}",
    responses={
        409: error_doc(
            "the rule is retired, changed by someone else meanwhile, or of another kind "
            "than the params"
        )
    },
)
def change_policy(
    rule_id: str, body: PolicyPatch, principal: PrincipalDep, services: GovernanceDep
) -> PolicyOut:
    """Change params, enforcement or status; the answer carries the new version."""
    rule = services.policies.change(
        principal,
        require_id(rule_id, "policy rule"),
        body.changes(),
        expected_version=body.version,
    )
    return views.policy(rule)


# An action, not DELETE: the rule stays readable (evaluations cite it), and a DELETE
# whose resource is still there afterwards would say the opposite.
@router.post("/{rule_id}/retire", responses={409: CHANGE_CONFLICT})
def retire_policy(
    rule_id: str,
    principal: PrincipalDep,
    services: GovernanceDep,
    version: Annotated[
        int | None, Query(ge=1, description="retire only if the rule is at this version")
    ] = None,
) -> PolicyOut:
    """Retire the rule (status RETIRED, version + 1): no run is judged by it again."""
    rule = services.policies.retire(
        principal, require_id(rule_id, "policy rule"), expected_version=version
    )
    return views.policy(rule)
