"""``/api/v1/keys``: a tenant's API keys — list, create, revoke, rotate (admin keys).

Another tenant's key is "not found" (404), never "forbidden". Rotation has no grace
period: the old key stops working with the answer that shows the new one; to switch
without a gap, create a second key, move to it, then revoke the first.
"""

from __future__ import annotations

from fastapi import APIRouter

from runkernel.domain.records import ApiKey, Role
from runkernel.entrypoints.api.auth import KernelDep, PrincipalDep
from runkernel.entrypoints.api.ids import require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES, error_doc
from runkernel.entrypoints.api.schemas_keys import (
    KeyCreate,
    KeyList,
    KeyOut,
    NewKeyOut,
    RotationOut,
)
from runkernel.entrypoints.api.views import iso, iso_or_none

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=ERROR_RESPONSES)

REVOKED = error_doc("the key is revoked already, or is the tenant's last admin key")


@router.get("")
def list_keys(principal: PrincipalDep, kernel: KernelDep) -> KeyList:
    """The tenant's keys, oldest first, revoked ones included (with ``revoked_at``)."""
    return KeyList(keys=[key_out(k) for k in kernel.tenancy.list_keys(principal)])


@router.post("", status_code=201)
def create_key(body: KeyCreate, principal: PrincipalDep, kernel: KernelDep) -> NewKeyOut:
    """A new key of this tenant; its secret is in this answer only."""
    made = kernel.tenancy.create_key(principal, Role(body.role))
    return NewKeyOut(key=key_out(made.key), api_key=made.api_key)


@router.post("/{key_id}/revoke", responses={409: REVOKED})
def revoke_key(key_id: str, principal: PrincipalDep, kernel: KernelDep) -> KeyOut:
    """Revoke a key: its next request gets 401."""
    return key_out(kernel.tenancy.revoke_key(principal, require_id(key_id, "key")))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    responses={409: error_doc("the key is revoked already")},
)
def rotate_key(key_id: str, principal: PrincipalDep, kernel: KernelDep) -> RotationOut:
    """A new key of the same role, shown once; the old one is revoked now (no grace)."""
    rotation = kernel.tenancy.rotate_key(principal, require_id(key_id, "key"))
    return RotationOut(
        key=key_out(rotation.new.key),
        api_key=rotation.new.api_key,
        revoked=key_out(rotation.revoked),
    )


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        prefix=key.prefix,
        role=key.role.value,
        created_at=iso(key.created_at_ms),
        revoked_at=iso_or_none(key.revoked_at_ms),
    )
