"""Bodies of ``/api/v1/keys``. A key's secret appears in exactly two answers — the one
that creates it and the one that rotates to it — and its hash in none."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from runkernel.entrypoints.api.schemas import Body


class KeyCreate(Body):
    role: Literal["admin", "user"] = Field(
        "user", description="what the key may do (README: Roles)"
    )


class KeyOut(BaseModel):
    id: str
    prefix: str = Field(description="the secret's first characters, to tell keys apart")
    role: Literal["admin", "user"]
    created_at: str
    revoked_at: str | None


class KeyList(BaseModel):
    keys: list[KeyOut]


class NewKeyOut(BaseModel):
    key: KeyOut
    api_key: str = Field(description="the secret: shown this once, runkernel keeps only its hash")


class RotationOut(NewKeyOut):
    revoked: KeyOut = Field(description="the key rotated away from, revoked as of now")
