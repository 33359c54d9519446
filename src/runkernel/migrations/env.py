"""Alembic environment: runs migrations on the connection or URL runkernel hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from runkernel.adapters.db.tables import metadata

config = context.config


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("runkernel migrations run through `runkernel db upgrade`")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
