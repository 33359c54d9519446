"""The schema, as SQLAlchemy Core tables. Times are epoch milliseconds; money is micros."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
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

from runkernel.adapters.db.codec import SqliteJson

metadata = MetaData()
Json = JSON().with_variant(JSONB(), "postgresql").with_variant(SqliteJson(), "sqlite")

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("status_changed_at_ms", BigInteger, nullable=True),
    Column("status_changed_by", String(64), nullable=True),
    # What all its runs may cost in one UTC calendar month; NULL: no cap.
    Column("monthly_cost_micros", BigInteger, nullable=True),
)

# A tenant's spend in one UTC month ("2026-12"), made on the first reservation of the
# month: a run's reservations are held in the month of its first one (runs.spend_month),
# its cost spent there when it is final.
tenant_spend = Table(
    "tenant_spend",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("spent_micros", BigInteger, nullable=False, server_default="0"),
    Column("reserved_micros", BigInteger, nullable=False, server_default="0"),
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

# Cross-tenant keys, apart from api_keys so that no tenant-scoped query on api_keys can
# ever reach one (see services/operators.py).
operator_keys = Table(
    "operator_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
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
    # Worst-case cost of steps in flight plus the recorded cost of runs not yet final:
    # a step may start only if spent + reserved + its reservation fits the budget.
    Column("reserved_micros", BigInteger, nullable=False, server_default="0"),
    Column("created_at_ms", BigInteger, nullable=False),
    # What a step whose reservation does not fit does (domain.budgets.OnBudget).
    Column("on_budget", String(20), nullable=False, server_default="terminate"),
    # How many of the agent's runs may execute at once; NULL: unlimited.
    Column("max_concurrent_runs", Integer, nullable=True),
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
    # SHA-256 of the submitted request: a reused idempotency key must name the same request.
    Column("request_fingerprint", String(64)),
    # The api_keys id that submitted the run (keys are revoked, never deleted).
    Column("submitted_key_id", String(64)),
    Column("attempt", Integer, nullable=False, server_default="0"),
    # The fencing token every worker write is conditioned on, bumped by every claim;
    # ``attempt`` counts only first claims and takeovers of expired leases.
    Column("claim_epoch", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(100)),
    Column("lease_expires_at_ms", BigInteger),
    Column("next_step", Integer, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=False, server_default="0"),
    # The reservation of the step in flight, released when the step is recorded, the run
    # finishes or its lease is taken over.
    Column("reserved_micros", BigInteger, nullable=False, server_default="0"),
    Column("spend_month", String(7)),  # the tenant_spend month its reservations are in
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("output", Json),
    Column("observability_status", String(20), nullable=False, server_default="OK"),
    Column("risk_level", String(20), nullable=False, server_default="NORMAL"),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    # Asks the worker to pause the run at its next step boundary (see run_pauses).
    Column("pause_requested", Boolean, nullable=False, server_default=text("false")),
    # Set when a paused run's resume is granted: it waits for a worker to claim it.
    Column("resume_requested_at_ms", BigInteger),
    Column("pause_requested_by", String(200)),  # who asked for the pause (the actor)
    # The budgets (domain.thresholds names) whose threshold.exceeded this run has sent,
    # so each is sent once per run; NULL while none.
    Column("thresholds_crossed", Json),
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
        postgresql_where=text("status IN ('queued', 'running', 'paused')"),
        sqlite_where=text("status IN ('queued', 'running', 'paused')"),
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

# One row per claim (per epoch), with the attempt it was made under.
run_claims = Table(
    "run_claims",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("claim_epoch", Integer, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", String(100), nullable=False),
    Column("claimed_at_ms", BigInteger, nullable=False),
)

# One row per pause of a run, open while ``ended_at_ms`` is null (domain/pauses.py).
run_pauses = Table(
    "run_pauses",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("violations", Json, nullable=False),
    Column("paused_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("authorities", Json, nullable=False),
    Column("on_timeout", String(16), nullable=False),
    Column("paused_by", String(200), nullable=False),
    Column("key_owner", String(64)),
    Column("escalations", Integer, nullable=False, server_default="0"),
    Column("resume_attempts", Integer, nullable=False, server_default="0"),
    Column("last_actor", String(200)),
    Column("refusals", Json, nullable=False),
    Column("ended_at_ms", BigInteger),
    Column("ended_by", String(200)),
    Column("outcome", String(16)),
    Column("step_index", Integer),  # the step the run paused before
    # The SLA expiry that run.pause_expiring was sent for: once per expiry, and again for
    # the longer one an escalation sets.
    Column("expiring_notified_for_ms", BigInteger),
    Index("ix_run_pauses_open_expiry", "ended_at_ms", "expires_at_ms"),
)

# Every mid-run check that decided something other than CONTINUE or SKIP (domain/midrun.py),
# written with the pause or the completion it caused.
run_policy_checks = Table(
    "run_policy_checks",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("violations", Json, nullable=False),
    Column("checked_at_ms", BigInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Index("ix_run_policy_checks_run", "run_id", "id"),
)

# -- governance (DESIGN invariants 1-5) ---------------------------------------------------

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id")),  # NULL: a system incident
    Column("run_id", String(64), ForeignKey("runs.id")),
    Column("category", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("title", String(300), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("error_code", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("resolved_at_ms", BigInteger),
    # One incident per cause: the database, not the caller, refuses a second.
    UniqueConstraint("run_id", "category", name="uq_incidents_run_category"),
    Index("ix_incidents_tenant", "tenant_id", "status", "id"),
)

policy_rules = Table(
    "policy_rules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("agent_id", String(64), ForeignKey("agents.id")),  # set when scope = agent
    Column("kind", String(32), nullable=False),
    Column("params", Json, nullable=False),
    Column("enforcement", String(16), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_policy_rules_tenant", "tenant_id", "status"),
)

policy_evaluations = Table(
    "policy_evaluations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False, unique=True),
    Column("outcome", String(16), nullable=False),
    Column("violations", Json, nullable=False),
    Column("rules", Json, nullable=False),  # [{id, version, kind, enforcement}]
    Column("evaluated_at_ms", BigInteger, nullable=False),
)

traces = Table(
    "traces",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("status", String(16), nullable=False),  # started | completed | failed | aborted
    Column("sink_error", Text),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("completed_at_ms", BigInteger),
)

lessons = Table(
    "lessons",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("agent_id", String(64), ForeignKey("agents.id"), nullable=False),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # failure | near_threshold | critical_success
    Column("dedupe_key", String(200), nullable=False),
    Column("state", String(32), nullable=False),
    Column("title", String(300), nullable=False),
    Column("detail", Json, nullable=False),
    Column("proposed_rule", Json),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # "once per band per agent per day" and the like are a unique key, not a read-then-write.
    UniqueConstraint("tenant_id", "dedupe_key", name="uq_lessons_dedupe"),
    Index("ix_lessons_tenant", "tenant_id", "state", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(64), nullable=False, unique=True),  # the event id subscribers dedupe on
    Column("topic", String(100), nullable=False),
    Column("tenant_id", String(64)),
    Column("run_id", String(64)),
    Column("payload", Json, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("published_at_ms", BigInteger),
    Column("claimed_by", String(100)),
    Column("claimed_until_ms", BigInteger),
    Index(
        "ix_outbox_pending",
        "seq",
        postgresql_where=text("published_at_ms IS NULL"),
        sqlite_where=text("published_at_ms IS NULL"),
    ),
)

audit_expectations = Table(
    "audit_expectations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("tenant_id", String(64)),
    Column("domain", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("deadline_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("acked_at_ms", BigInteger),
    Column("metadata", Json, nullable=False),
    Index("ix_audit_expectations_run", "run_id"),
    Index(
        "ix_audit_expectations_due",
        "deadline_ms",
        postgresql_where=text("status = 'PENDING'"),
        sqlite_where=text("status = 'PENDING'"),
    ),
)

audit_acks = Table(
    "audit_acks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("tenant_id", String(64)),
    Column("domain", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # SUCCESS | FAILED | ROLLED_BACK
    Column("result_id", String(64)),
    Column("error", Text),
    Column("rolled_back", Boolean, nullable=False, server_default=text("false")),
    Column("rollback_reason", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("metadata", Json, nullable=False),
    Index("ix_audit_acks_run", "run_id"),
)

audit_reconciliations = Table(
    "audit_reconciliations",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("tenant_id", String(64)),
    Column("status", String(16), nullable=False),  # COMPLETE | INCOMPLETE | STALE
    Column("clean", Boolean, nullable=False),
    Column("result", Json, nullable=False),
    Column("reconciled_at_ms", BigInteger, nullable=False),
    Index("ix_audit_reconciliations_status", "status", "reconciled_at_ms"),
)

# Acks for a non-SQL audit store (Redis), written in the transaction of the work they
# report and forwarded to the store after commit (DESIGN invariant 9: a Redis fault loses
# no ack). The id is the ack's id, which the store dedupes on.
audit_ack_outbox = Table(
    "audit_ack_outbox",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("ack", Json, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("forwarded_at_ms", BigInteger),
    Index(
        "ix_audit_ack_outbox_pending",
        "created_at_ms",
        postgresql_where=text("forwarded_at_ms IS NULL"),
        sqlite_where=text("forwarded_at_ms IS NULL"),
    ),
)

# Jobs that one process at a time does for the whole deployment (the outbox relay, the
# audit sweep): a holder renews its lease; anyone may take an expired one.
process_leases = Table(
    "process_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("acquired_at_ms", BigInteger, nullable=False),
)
