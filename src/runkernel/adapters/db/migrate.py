"""Schema migrations (Alembic), driven from code so no alembic.ini is needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from runkernel.adapters.db.engine import READ_ONLY, Database

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"
VERSION_TABLE = "alembic_version"  # alembic's default, which env.py keeps


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    # Read directly rather than through alembic's MigrationContext, which logs two INFO
    # lines each time it is configured, and /readyz asks on every probe.
    with db.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        return next(iter(versions), None)


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; safe to run again when already current."""
    config = _config()
    with db.write_lock, db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def is_current(db: Database) -> bool:
    return current_revision(db) == head_revision()
