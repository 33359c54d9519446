"""The schema, as SQLAlchemy Core tables. Times are epoch milliseconds; money is micros."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
Json = JSON().with_variant(JSONB(), "postgresql")

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("created_at_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("role", String(20), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("budget_micros", BigInteger, nullable=False),
    Column("spent_micros", BigInteger, nullable=False, server_default="0"),
    Column("created_at_ms", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("agent_id", String(64), ForeignKey("agents.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("phase", String(20), nullable=False),
    Column("plan", Json, nullable=False),
    Column("budget", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("idempotency_key", String(200)),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(100)),
    Column("lease_expires_at_ms", BigInteger),
    Column("next_step", Integer, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=False, server_default="0"),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("output", Json),
    Column("observability_status", String(20), nullable=False, server_default="OK"),
    Column("risk_level", String(20), nullable=False, server_default="NORMAL"),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger),
    Column("finished_at_ms", BigInteger),
    UniqueConstraint("tenant_id", "idempotency_key", name="uq_runs_tenant_idempotency"),
    Index("ix_runs_tenant_id", "tenant_id", "id"),
    Index("ix_runs_tenant_status", "tenant_id", "status", "id"),
    # Claims only ever look at live runs: a partial index keeps that scan small however
    # many finished runs pile up.
    Index(
        "ix_runs_claimable",
        "status",
        "id",
        postgresql_where=text("status IN ('queued', 'running')"),
        sqlite_where=text("status IN ('queued', 'running')"),
    ),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("step_index", Integer, primary_key=True),
    Column("step_id", String(64), nullable=False),
    Column("skill", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("input", Json),
    Column("output", Json),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=False, server_default="0"),
    Column("duration_ms", BigInteger, nullable=False, server_default="0"),
    Column("error", Text),
    Column("attempt", Integer, nullable=False),
    Column("tries", Integer, nullable=False, server_default="1"),
    Column("finished_at_ms", BigInteger, nullable=False),
)

run_transitions = Table(
    "run_transitions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("from_phase", String(20)),
    Column("from_status", String(20)),
    Column("to_phase", String(20), nullable=False),
    Column("to_status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_run_transitions_run", "run_id", "id"),
)

run_claims = Table(
    "run_claims",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("worker_id", String(100), nullable=False),
    Column("claimed_at_ms", BigInteger, nullable=False),
)
