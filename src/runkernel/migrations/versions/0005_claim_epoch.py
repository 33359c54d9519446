"""claim epochs: a fencing token apart from the attempt count

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

``runs.claim_epoch`` is bumped by every claim and is what worker writes are fenced on;
``attempt`` keeps counting only first claims and takeovers. ``run_claims`` logs one row
per claim, keyed by epoch. Until now every claim counted an attempt, so the epoch of every
stored claim is its attempt.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claim_epoch", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute("UPDATE runs SET claim_epoch = attempt")
    with op.batch_alter_table("run_claims", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_epoch", sa.Integer(), nullable=True))
    op.execute("UPDATE run_claims SET claim_epoch = attempt")
    _rekey_claims(old="attempt", new="claim_epoch")


def downgrade() -> None:
    # Epochs that were no attempts (none yet) would collide on (run_id, attempt).
    op.execute("DELETE FROM run_claims WHERE claim_epoch <> attempt")
    _rekey_claims(old="claim_epoch", new="attempt")
    with op.batch_alter_table("run_claims", schema=None) as batch_op:
        batch_op.drop_column("claim_epoch")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("claim_epoch")


def _rekey_claims(*, old: str, new: str) -> None:
    """Make run_claims' primary key (run_id, ``new``) instead of (run_id, ``old``)."""
    postgres = op.get_context().dialect.name == "postgresql"
    # SQLite rebuilds the table, from this definition rather than a reflection that would
    # keep ``old`` in the key beside ``new``.
    unkeyed = sa.Table(
        "run_claims",
        sa.MetaData(),
        sa.Column("run_id", sa.String(length=64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=False),
        sa.Column("claimed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("claim_epoch", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("run_claims", schema=None, copy_from=unkeyed) as batch_op:
        if postgres:
            batch_op.alter_column(new, existing_type=sa.Integer(), nullable=False)
            batch_op.drop_constraint("run_claims_pkey", type_="primary")
        batch_op.create_primary_key("run_claims_pkey", ["run_id", new])
