"""what an agent does when a step's reservation does not fit (on_budget), and how many of
its runs may execute at once (max_concurrent_runs); a tenant's monthly cost cap and its
spend per UTC month (tenant_spend), and the month a run's reservations are held in

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("monthly_cost_micros", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spend_month", sa.String(length=7), nullable=True))
    op.create_table(
        "tenant_spend",
        sa.Column("tenant_id", sa.String(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant_id", "month"),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("on_budget", sa.String(length=20), nullable=False, server_default="terminate")
        )
        # NULL: unlimited. Agents made before this migration keep no limit.
        batch_op.add_column(sa.Column("max_concurrent_runs", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_table("tenant_spend")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("spend_month")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("monthly_cost_micros")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("max_concurrent_runs")
        batch_op.drop_column("on_budget")
