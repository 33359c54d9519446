"""notices sent once: run.pause_expiring per pause expiry, threshold.exceeded per budget

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-01

``run_pauses.expiring_notified_for_ms`` is the SLA expiry a ``run.pause_expiring`` notice
was sent for (NULL: none yet), so a restarted sweep neither repeats nor loses it.
``runs.thresholds_crossed`` lists the budgets whose ``threshold.exceeded`` the run has sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("run_pauses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiring_notified_for_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thresholds_crossed", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("thresholds_crossed")
    with op.batch_alter_table("run_pauses", schema=None) as batch_op:
        batch_op.drop_column("expiring_notified_for_ms")
