"""SQL for operator keys. Like every repository it takes its caller's connection and never
commits, rolls back or begins (DESIGN invariant 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from runkernel.adapters.db.tables import operator_keys
from runkernel.domain.records import OperatorKey, Principal


class SqlOperatorKeyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, *, key_id: str, key_hash: str, prefix: str, now_ms: int) -> None:
        self._conn.execute(
            insert(operator_keys).values(
                id=key_id, key_hash=key_hash, prefix=prefix, created_at_ms=now_ms
            )
        )

    def principal_for(self, key_hash: str) -> Principal | None:
        """The principal of an unrevoked operator key."""
        key_id = self._conn.execute(
            select(operator_keys.c.id).where(
                operator_keys.c.key_hash == key_hash, operator_keys.c.revoked_at_ms.is_(None)
            )
        ).scalar()
        return None if key_id is None else Principal.operator(key_id)

    def keys(self) -> list[OperatorKey]:
        rows = self._conn.execute(
            select(operator_keys).order_by(operator_keys.c.created_at_ms, operator_keys.c.id)
        )
        return [_key(r) for r in rows]

    def get(self, key_id: str) -> OperatorKey | None:
        row = self._conn.execute(select(operator_keys).where(operator_keys.c.id == key_id)).first()
        return _key(row) if row else None

    def revoke(self, key_id: str, now_ms: int) -> bool:
        result = self._conn.execute(
            update(operator_keys)
            .where(operator_keys.c.id == key_id, operator_keys.c.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms)
        )
        return result.rowcount == 1


def _key(row: Row[Any]) -> OperatorKey:
    # Never the hash: an OperatorKey has no field for it.
    return OperatorKey(row.id, row.prefix, row.created_at_ms, row.revoked_at_ms)
