"""All settings, read from ``RUNKERNEL_*`` environment variables in this one place.

Every CLI flag that overrides a setting names the same field; the README's configuration
table lists them all.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runkernel.domain.money import usd_to_micros
from runkernel.domain.traces import ObservabilityMode

DEV_SECRET = "runkernel-dev-secret"


class Mode(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PROD = "prod"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNKERNEL_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./runkernel.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql://user@host/db",
    )
    mode: Mode = Field(Mode.LOCAL, description="local | test | prod")
    host: str = Field("127.0.0.1", description="address the API binds to")
    port: int = Field(8000, ge=0, le=65535, description="port the API listens on")

    worker_concurrency: int = Field(8, ge=1, le=256, description="runs a worker executes at once")
    lease_s: float = Field(
        30.0, gt=0, description="lease a claim (and a relay/sweep process lease) holds"
    )
    poll_interval_s: float = Field(
        2.0, gt=0, description="fallback poll when no wake-up signal arrives"
    )
    max_attempts: int = Field(3, ge=1, description="claims of one run before it fails")
    claim_batch: int = Field(8, ge=1, le=1000, description="runs claimed per query")
    drain_timeout_s: float = Field(
        30.0, ge=0, description="on SIGTERM, time in-flight runs get before they are released"
    )
    retry_backoff_s: float = Field(0.5, ge=0, description="first step-retry delay (doubles)")
    retry_backoff_max_s: float = Field(30.0, ge=0, description="longest step-retry delay")

    max_plan_steps: int = Field(100, ge=1, description="steps a plan may have")
    max_payload_bytes: int = Field(262_144, ge=1024, description="largest request body accepted")

    max_step_output_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="largest output a step may store (an HTTP body is read up to this)",
    )
    max_step_input_bytes: int = Field(
        1_048_576, ge=1024, description="largest rendered input (params) a step may have"
    )
    default_step_cost_usd: Decimal = Field(
        Decimal(0),
        ge=0,
        le=1_000_000,
        description="worst-case cost reserved for a step of a skill that cannot estimate "
        "its own and declares no estimated_cost_usd",
    )
    default_max_concurrent_runs: int | None = Field(
        5,
        ge=1,
        description="how many runs of an agent created without max_concurrent_runs may "
        "execute at once (unset: unlimited)",
    )
    budget_cap_min_tokens: int = Field(
        16,
        ge=1,
        description="under on_budget cap, the fewest max_tokens an LLM step is lowered to; "
        "below it the run terminates budget_exceeded",
    )
    egress_allow: str = Field(
        "",
        description="exceptions to the egress guard: comma-separated IPs, CIDRs or host names, "
        "each optionally with :port",
    )

    rate_limit_key_per_s: float = Field(
        50.0, ge=0, description="requests per second one API key may make (0: unlimited)"
    )
    rate_limit_key_burst: int = Field(100, ge=1, description="burst size of the per-key bucket")
    rate_limit_tenant_per_s: float = Field(
        200.0, ge=0, description="requests per second all keys of one tenant may make (0: off)"
    )
    rate_limit_tenant_burst: int = Field(
        400, ge=1, description="burst size of the per-tenant bucket"
    )

    worker_relay: bool = Field(
        True, description="worker processes also run the outbox relay (one holder at a time)"
    )
    worker_sweep: bool = Field(
        True, description="worker processes also run the audit sweep (one holder at a time)"
    )

    llm_base_url: str = Field(
        "https://api.openai.com/v1", description="OpenAI-compatible chat completions base URL"
    )
    llm_api_key: SecretStr | None = Field(None, description="key for the LLM provider")
    llm_timeout_s: float = Field(60.0, gt=0, description="timeout of one LLM call")
    webhook_secret: SecretStr = Field(
        SecretStr(DEV_SECRET), description="HMAC-SHA256 key of webhook.send"
    )

    observability_mode: ObservabilityMode = Field(
        ObservabilityMode.DEGRADED,
        description="what a failing trace sink does: STRICT | DEGRADED | PERMISSIVE",
    )
    trace_sink: str = Field("none", description="where traces are exported: none|log|http")
    trace_sink_url: str | None = Field(None, description="collector URL of the http sink")
    reconcile_interval_s: float = Field(
        10.0, gt=0, description="how often the audit sweep reconciles runs past deadline"
    )
    relay_interval_s: float = Field(1.0, gt=0, description="fallback poll of the outbox relay")
    completion_retries: int = Field(
        3, ge=0, description="retries of a failed completion transaction before lease expiry"
    )

    redis_url: str | None = Field(None, description="redis://host:port/db, for the Redis stores")
    audit_store: Literal["sql", "memory", "redis"] = Field(
        "sql", description="where audit expectations and acks live: sql | memory | redis"
    )
    audit_redis_ttl_s: int = Field(
        3600, ge=1, description="Redis audit keys live this long past a run's deadline"
    )
    grace_period_ms: int = Field(
        5000, ge=0, description="liveness grace after the run timeout before a run is stale"
    )
    run_timeout_s: float = Field(
        3600, gt=0, description="run timeout when the run's budget sets none"
    )
    pause_sla_s: float = Field(
        3600, gt=0, description="how long a paused run waits for a resume before its timeout"
    )
    mid_run_checks: bool = Field(
        True,
        description="check policy rules, stop flag, tenant status and run budget before "
        "every step (false: SKIP; budget reservations still hold)",
    )
    policy_check_interval_s: float = Field(
        30.0,
        gt=0,
        description="the mid-run check re-reads rules, stop flag and tenant status at "
        "least this often (and always before a worker's first step of a run)",
    )
    policy_check_min_steps: int = Field(
        5, ge=1, description="... or after this many steps, whichever comes first"
    )
    pause_notify_before_s: float = Field(
        300,
        ge=0,
        description="run.pause_expiring is sent this long before a pause's SLA expiry "
        "(once per expiry; 0: never)",
    )
    audit_contract_enabled: bool = Field(
        True, description="declare, ack and reconcile audit expectations (runtime audit contract)"
    )

    @field_validator("default_step_cost_usd")
    @classmethod
    def _whole_micros(cls, value: Decimal) -> Decimal:
        usd_to_micros(value)  # refuses an amount that rounds to 0 micros
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
