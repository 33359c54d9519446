"""when and by whom a tenant's status last changed (suspend, reactivate)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_changed_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("status_changed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("status_changed_by")
        batch_op.drop_column("status_changed_at_ms")
