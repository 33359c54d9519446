"""The request dependency that hands routes the governance services of the app's kernel."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from runkernel.entrypoints.governance_services import GovernanceServices


def governance_of(request: Request) -> GovernanceServices:
    return cast(GovernanceServices, request.app.state.governance)


GovernanceDep = Annotated[GovernanceServices, Depends(governance_of)]
