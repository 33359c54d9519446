"""run pauses: why a run waits, who may resume it, and every attempt to

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

``run_pauses`` keeps one row per pause of a run (keyed by run and pause number), open
while ``ended_at_ms`` is null. ``runs.pause_requested`` asks the worker to pause the run at
its next step boundary (as ``cancel_requested`` asks it to stop); ``runs.
resume_requested_at_ms`` marks a paused run whose resume was granted and that waits for a
worker to claim it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "run_pauses",
        sa.Column("run_id", sa.String(length=64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("violations", json, nullable=False),
        sa.Column("paused_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("authorities", json, nullable=False),
        sa.Column("on_timeout", sa.String(length=16), nullable=False),
        sa.Column("paused_by", sa.String(length=200), nullable=False),
        sa.Column("key_owner", sa.String(length=64), nullable=True),
        sa.Column("escalations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("resume_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_actor", sa.String(length=200), nullable=True),
        sa.Column("refusals", json, nullable=False),
        sa.Column("ended_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "number"),
    )
    op.create_index("ix_run_pauses_open_expiry", "run_pauses", ["ended_at_ms", "expires_at_ms"])
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pause_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("resume_requested_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("pause_requested_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("pause_requested_by")
        batch_op.drop_column("resume_requested_at_ms")
        batch_op.drop_column("pause_requested")
    op.drop_index("ix_run_pauses_open_expiry", table_name="run_pauses")
    op.drop_table("run_pauses")
