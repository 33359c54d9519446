"""Request dependencies: the kernel behind the app, and the caller's ``Principal``."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runkernel.bootstrap import Kernel
from runkernel.domain.records import Principal

# auto_error=False: a missing or non-Bearer header reaches Tenancy.authenticate, which
# raises the AuthenticationError that the error mapping turns into our 401 JSON.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rk_…`")


def kernel_of(request: Request) -> Kernel:
    return cast(Kernel, request.app.state.kernel)


KernelDep = Annotated[Kernel, Depends(kernel_of)]


def current_principal(
    kernel: KernelDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return kernel.tenancy.authenticate(credentials.credentials if credentials else None)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
