"""mid-run policy checks: the decisions kept with each run, and the step a pause is before

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``run_policy_checks`` keeps every check before a step that decided PAUSE or TERMINATE
(``domain/midrun.py``), written with the pause or the completion it caused.
``run_pauses.step_index`` is the step the run paused before: a resumed APPROVAL_REQUIRED
pause of step N is the approval of step N.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "run_policy_checks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("violations", json, nullable=False),
        sa.Column("checked_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_policy_checks_run", "run_policy_checks", ["run_id", "id"])
    with op.batch_alter_table("run_pauses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_pauses", schema=None) as batch_op:
        batch_op.drop_column("step_index")
    op.drop_index("ix_run_policy_checks_run", table_name="run_policy_checks")
    op.drop_table("run_policy_checks")
