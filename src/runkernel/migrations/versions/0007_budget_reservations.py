"""budget reservations: what steps in flight hold of an agent's budget

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("agents", "runs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("reserved_micros", sa.BigInteger(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    for table in ("runs", "agents"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("reserved_micros")
