"""audit ack outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_ack_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column(
            "ack",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("forwarded_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_ack_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_ack_outbox_pending",
            ["created_at_ms"],
            unique=False,
            postgresql_where=sa.text("forwarded_at_ms IS NULL"),
            sqlite_where=sa.text("forwarded_at_ms IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_ack_outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_audit_ack_outbox_pending",
            postgresql_where=sa.text("forwarded_at_ms IS NULL"),
            sqlite_where=sa.text("forwarded_at_ms IS NULL"),
        )

    op.drop_table("audit_ack_outbox")
