"""PostgreSQL forms of the hot multi-statement writes, each ONE statement.

Data-modifying CTEs let PostgreSQL do in one round trip what SQLite (which has no DML in
WITH, and no round trips to save) does in two or three statements. Each statement keeps
the lease fence of DESIGN invariant 6: when the fenced UPDATE matches no row, the CTEs
that read from it insert nothing and the statement returns no row.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

_FENCE = """
    id = :f_run_id AND claim_epoch = :f_epoch AND lease_owner = :f_worker
    AND status = 'running'
"""

# The agent's row is updated only when the reservation fits (the conditional UPDATE is
# re-checked on the row's newest version once a concurrent writer commits); the caller
# rolls back the run's share when it did not.
RESERVE = text(
    f"""
    WITH held AS (
        UPDATE runs SET reserved_micros = reserved_micros + :p_reserve,
            spend_month = COALESCE(spend_month, :p_month)
        WHERE {_FENCE}
        RETURNING agent_id, tenant_id, spend_month
    ), agent AS (
        UPDATE agents SET reserved_micros = agents.reserved_micros + :p_reserve
        FROM held
        WHERE agents.id = held.agent_id
            AND agents.spent_micros + agents.reserved_micros + :p_reserve + :p_slack
                <= agents.budget_micros
        RETURNING agents.id
    ), month AS (
        -- The tenant's month, only once the agent's share fit (it reads ``agent``: the
        -- agent's row is locked first, as by every writer of both).
        INSERT INTO tenant_spend (tenant_id, month, spent_micros, reserved_micros)
        SELECT held.tenant_id, held.spend_month, 0, CAST(:p_reserve AS BIGINT)
        FROM held JOIN tenants ON tenants.id = held.tenant_id
        WHERE EXISTS (SELECT 1 FROM agent)
            AND (tenants.monthly_cost_micros IS NULL
                OR CAST(:p_reserve AS BIGINT) + CAST(:p_slack AS BIGINT)
                    <= tenants.monthly_cost_micros)
        ON CONFLICT (tenant_id, month) DO UPDATE
            SET reserved_micros = tenant_spend.reserved_micros + EXCLUDED.reserved_micros
            WHERE tenant_spend.spent_micros + tenant_spend.reserved_micros
                + EXCLUDED.reserved_micros + CAST(:p_slack AS BIGINT) <= COALESCE(
                    (SELECT monthly_cost_micros FROM tenants WHERE id = EXCLUDED.tenant_id),
                    tenant_spend.spent_micros + tenant_spend.reserved_micros
                        + EXCLUDED.reserved_micros + CAST(:p_slack AS BIGINT))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM month) AS fits FROM held
    """
)

# The step's reservation becomes its recorded cost, which the agent holds until the run
# is final and pays for it (FINISH). What the agent holds after it comes back for the
# threshold check: from the settling UPDATE, else the statement's snapshot of the row.
RECORD_STEP = text(
    f"""
    WITH advanced AS (
        UPDATE runs SET
            next_step = :p_next_step,
            input_tokens = input_tokens + :p_input_tokens,
            output_tokens = output_tokens + :p_output_tokens,
            cost_micros = cost_micros + :p_cost,
            reserved_micros = :p_left,
            spend_month = COALESCE(spend_month, :p_month),
            updated_at_ms = :p_now
        WHERE {_FENCE}
        RETURNING id, agent_id, tenant_id, spend_month, cancel_requested, pause_requested,
            thresholds_crossed
    ), settled AS (
        UPDATE agents SET reserved_micros = agents.reserved_micros + :p_reserve_delta
        FROM advanced
        WHERE agents.id = advanced.agent_id AND :p_reserve_delta <> 0
        RETURNING agents.spent_micros + agents.reserved_micros AS held
    ), step AS (
        INSERT INTO run_steps (
            run_id, step_index, step_id, skill, status, input, output, input_tokens,
            output_tokens, cost_micros, duration_ms, error, attempt, tries, finished_at_ms
        )
        SELECT id, :step_index, :step_id, :skill, :status, :input, :output, :input_tokens,
            :output_tokens, :cost_micros, :duration_ms, :error, :attempt, :tries,
            :finished_at_ms
        FROM advanced
    )
    SELECT a.cancel_requested, a.pause_requested, a.thresholds_crossed, a.tenant_id,
        a.spend_month,
        CASE WHEN :p_cost = 0 THEN NULL
            ELSE COALESCE((SELECT held FROM settled), ag.spent_micros + ag.reserved_micros)
        END AS agent_held,
        ag.budget_micros AS agent_budget
    FROM advanced a JOIN agents ag ON ag.id = a.agent_id
    """
).bindparams(bindparam("input", type_=JSONB), bindparam("output", type_=JSONB))

FINISH = text(
    f"""
    WITH prior AS (
        SELECT reserved_micros AS held FROM runs WHERE {_FENCE}
    ), done AS (
        UPDATE runs SET
            status = :p_status,
            phase = :p_phase,
            output = :p_output,
            error_code = :p_error_code,
            error_message = :p_error_message,
            risk_level = :p_risk,
            observability_status = :p_observability,
            lease_owner = NULL,
            lease_expires_at_ms = NULL,
            reserved_micros = 0,
            updated_at_ms = :p_now,
            finished_at_ms = :p_now
        WHERE {_FENCE}
        RETURNING id, agent_id, tenant_id, spend_month, cost_micros, cancel_requested
    ), settled AS (
        UPDATE agents SET
            spent_micros = spent_micros + done.cost_micros,
            reserved_micros = reserved_micros - done.cost_micros - prior.held
        FROM done, prior
        WHERE agents.id = done.agent_id AND done.cost_micros + prior.held > 0
        RETURNING agents.id
    ), month_settled AS (
        -- After the agent's row (it reads ``settled``): every writer locks the agent, then
        -- the tenant's month, so two of them never wait on each other in a circle.
        UPDATE tenant_spend SET
            spent_micros = tenant_spend.spent_micros + done.cost_micros,
            reserved_micros = tenant_spend.reserved_micros - done.cost_micros - prior.held
        FROM done, prior
        WHERE tenant_spend.tenant_id = done.tenant_id AND tenant_spend.month = done.spend_month
            AND EXISTS (SELECT 1 FROM settled)
    ), recorded AS (
        INSERT INTO run_transitions
            (run_id, from_phase, from_status, to_phase, to_status, reason, at_ms)
        SELECT done.id, t.from_phase, t.from_status, t.to_phase, t.to_status, t.reason, t.at_ms
        FROM done, jsonb_to_recordset(:p_transitions) AS t(
            from_phase text, from_status text, to_phase text, to_status text,
            reason text, at_ms bigint
        )
    )
    SELECT cancel_requested FROM done
    """
).bindparams(bindparam("p_output", type_=JSONB), bindparam("p_transitions", type_=JSONB))

INSERT_RUN = text(
    """
    WITH created AS (
        INSERT INTO runs (
            id, tenant_id, agent_id, status, phase, plan, budget, metadata, idempotency_key,
            request_fingerprint, submitted_key_id, attempt, next_step, error_code,
            error_message, created_at_ms, updated_at_ms, finished_at_ms
        ) VALUES (
            :id, :tenant_id, :agent_id, :status, :phase, :plan, :budget, :metadata,
            :idempotency_key, :request_fingerprint, :submitted_key_id, :attempt, :next_step,
            :error_code, :error_message, :created_at_ms, :updated_at_ms, :finished_at_ms
        )
        RETURNING id
    )
    INSERT INTO run_transitions
        (run_id, from_phase, from_status, to_phase, to_status, reason, at_ms)
    SELECT created.id, t.from_phase, t.from_status, t.to_phase, t.to_status, t.reason, t.at_ms
    FROM created, jsonb_to_recordset(:p_transitions) AS t(
        from_phase text, from_status text, to_phase text, to_status text, reason text,
        at_ms bigint
    )
    """
).bindparams(
    bindparam("plan", type_=JSONB),
    bindparam("budget", type_=JSONB),
    bindparam("metadata", type_=JSONB),
    bindparam("p_transitions", type_=JSONB),
)
