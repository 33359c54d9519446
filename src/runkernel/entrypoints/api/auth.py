"""Request dependencies: the kernel behind the app, and the caller's ``Principal``.

``current_principal`` is the one door of every authenticated route: it looks the key up
in the database (no cache, so a revoked key is refused at once), then charges the
request to the key's and the tenant's rate limits. Requests that fail authentication are
not rate limited here: they get no bucket (so a flood of made-up keys cannot grow
memory), a failed lookup costs what a successful one does (one indexed read), and a
256-bit key cannot be guessed at any rate. Shedding such floods by client address
belongs in the proxy in front, which knows the real address.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runkernel.bootstrap import Kernel
from runkernel.domain.records import Principal
from runkernel.services.rate_limits import Rate, RateLimiter

# auto_error=False: a missing or non-Bearer header reaches Tenancy.authenticate, which
# raises the AuthenticationError that the error mapping turns into our 401 JSON.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rk_…`")


def kernel_of(request: Request) -> Kernel:
    return cast(Kernel, request.app.state.kernel)


KernelDep = Annotated[Kernel, Depends(kernel_of)]


def rate_limiter(kernel: Kernel) -> RateLimiter:
    """The limiter of one API app, from the kernel's settings and clock."""
    s = kernel.settings
    return RateLimiter(
        per_key=Rate(s.rate_limit_key_per_s, s.rate_limit_key_burst),
        per_tenant=Rate(s.rate_limit_tenant_per_s, s.rate_limit_tenant_burst),
        clock=kernel.clock,
    )


def current_principal(
    request: Request,
    kernel: KernelDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    principal = kernel.tenancy.authenticate(credentials.credentials if credentials else None)
    cast(RateLimiter, request.app.state.rate_limiter).check(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
