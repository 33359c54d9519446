"""what an agent does when a step's reservation does not fit (on_budget), and how many of
its runs may execute at once (max_concurrent_runs)

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("on_budget", sa.String(length=20), nullable=False, server_default="terminate")
        )
        # NULL: unlimited. Agents made before this migration keep no limit.
        batch_op.add_column(sa.Column("max_concurrent_runs", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("max_concurrent_runs")
        batch_op.drop_column("on_budget")
