"""the claim's partial index covers paused runs, which a resume makes claimable

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

The claim looks for queued runs, running runs with an expired lease and paused runs whose
resume was granted. ``ix_runs_claimable`` covered only the first two, so on PostgreSQL the
third branch of the claim's ``OR`` could use no index and every claim scanned the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_NAME = "ix_runs_claimable"


def _create(statuses: str) -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            _NAME,
            ["status", "id"],
            unique=False,
            postgresql_where=sa.text(f"status IN ({statuses})"),
            sqlite_where=sa.text(f"status IN ({statuses})"),
        )


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(_NAME)
    _create("'queued', 'running', 'paused'")


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(_NAME)
    _create("'queued', 'running'")
