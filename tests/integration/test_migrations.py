"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from runkernel.adapters.db import migrate
from runkernel.adapters.db.engine import open_database
from runkernel.adapters.db.tables import metadata


def test_migrations_match_the_declared_schema(database_url: str) -> None:
    db = open_database(database_url)
    try:
        migrate.upgrade(db)
        assert migrate.is_current(db)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"schema drift between tables.py and migrations: {diff}"
    finally:
        db.dispose()


def test_migrations_build_the_declared_primary_keys(database_url: str) -> None:
    """compare_metadata does not look at primary keys; a key a migration changed (as
    run_claims' became (run_id, claim_epoch)) is checked here, table by table."""
    db = open_database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            inspector = inspect(conn)
            stored = {
                name: inspector.get_pk_constraint(name)["constrained_columns"]
                for name in metadata.tables
            }
        declared = {
            name: [c.name for c in table.primary_key.columns]
            for name, table in metadata.tables.items()
        }
        assert stored == declared
    finally:
        db.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    db = open_database(database_url)
    try:
        migrate.upgrade(db)
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision()
    finally:
        db.dispose()
