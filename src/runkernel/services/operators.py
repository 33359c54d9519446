"""Operator keys: cross-tenant keys for the people who run runkernel, made and revoked only
with direct database access (``runkernel operators create-key|list-keys|revoke-key``).

They live in their own table, not as ``api_keys`` rows without a tenant: every tenant-scoped
query on ``api_keys`` (a tenant's key listing, revocation, the last-admin rule, the
tenant's status checked at authentication) then cannot reach one, with no ``tenant_id IS
NOT NULL`` to remember, and a tenant admin can neither see nor revoke an operator's key.
Like tenant keys they are 256-bit random tokens stored as SHA-256 hashes, shown once; an
operator key authenticates as a ``Principal`` of role ``operator`` and no tenant.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from runkernel.domain.ids import new_id
from runkernel.domain.records import OperatorKey
from runkernel.errors import ConflictError, NotFoundError
from runkernel.services.ports import Clock, UnitOfWorkFactory
from runkernel.services.tenancy import OPERATOR_KEY_PREFIX, PREFIX_CHARS, hash_key


@dataclass(frozen=True, slots=True)
class NewOperatorKey:
    """A key just made: ``api_key`` is its secret, shown this once and kept nowhere."""

    key: OperatorKey
    api_key: str


class Operators:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def create_key(self) -> NewOperatorKey:
        api_key = OPERATOR_KEY_PREFIX + secrets.token_urlsafe(32)
        key = OperatorKey(new_id("opk"), api_key[:PREFIX_CHARS], self._clock.now_ms())
        with self._uow() as uow:
            uow.operator_keys.add(
                key_id=key.id,
                key_hash=hash_key(api_key),
                prefix=key.prefix,
                now_ms=key.created_at_ms,
            )
            uow.commit()
        return NewOperatorKey(key, api_key)

    def list_keys(self) -> list[OperatorKey]:
        """Oldest first, revoked ones included; never a secret or a hash."""
        with self._uow(read_only=True) as uow:
            return uow.operator_keys.keys()

    def revoke_key(self, key_id: str) -> OperatorKey:
        """Revoke an operator key: its next request gets 401. There is no last-key rule:
        whoever can run this command can make a new key the same way."""
        now = self._clock.now_ms()
        with self._uow() as uow:
            key = uow.operator_keys.get(key_id)
            if key is None:
                raise NotFoundError(f"no operator key {key_id!r}")
            if not uow.operator_keys.revoke(key_id, now):
                raise ConflictError(f"key {key_id} is revoked already", code="key_revoked")
            uow.commit()
        return replace(key, revoked_at_ms=now)
