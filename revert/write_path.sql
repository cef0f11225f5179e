-- Revert routing_ledger:write_path from pg
--
-- Back to the write path as released at @v0.3.0 (deploy/write_path@v0.3.0.sql): only
-- insert_decision's body changed (same signature, grants and comment, kept by CREATE OR
-- REPLACE), and it is put back as released.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing.insert_decision(
    p_request_id      text,
    p_agent_id        uuid,
    p_task_type       text,
    p_input_tokens    int,
    p_max_tokens      int,
    p_request_payload jsonb DEFAULT '{}',
    p_streamed        boolean DEFAULT false
) RETURNS TABLE (outcome_id bigint, inference_id bigint, decision_rule text, model_slug text,
                 provider text, provider_model text, outcome_status text, not_before timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_agent        routing.agents;
    v_route        jsonb;
    v_rule         text;
    v_slug         text;
    v_status       text;
    v_refusal      jsonb;
    v_projected    numeric;
    v_spent        numeric;
    v_outcome_id   bigint;
    v_inference_id bigint;
    v_key_conflict text;
BEGIN
    -- Arguments (see the header): one inline test accepts the usual call.
    IF (p_request_id IS NOT NULL AND length(p_request_id) <= 255 AND p_request_id ~ '[^[:space:]]'
        AND p_agent_id IS NOT NULL
        AND p_task_type IS NOT NULL AND length(p_task_type) <= 64 AND p_task_type ~ '[^[:space:]]'
        AND p_input_tokens >= 0 AND p_max_tokens >= 1 AND p_streamed IS NOT NULL) IS NOT TRUE THEN
        PERFORM routing._require_text('insert_decision', 'p_request_id', p_request_id, 255);
        PERFORM routing._check_route_args('insert_decision', p_agent_id, p_task_type, p_input_tokens, p_max_tokens);
        PERFORM routing._require_not_null('insert_decision', 'p_streamed', p_streamed);
    END IF;

    -- Idempotent repeat: the request was already decided; return it, write nothing.
    -- The probe is one index lookup, and it is also the lock order: routing_outcomes is
    -- the first ledger relation this call touches (before the agent, the route plan, the
    -- attempt sequence), as for the other writers, so that a switch of the layout
    -- (partition_ledger, migrate_ledger_switch), which locks the ledger first, never
    -- deadlocks with it.
    IF EXISTS (SELECT FROM routing.routing_outcomes o WHERE o.agent_id = p_agent_id AND o.request_id = p_request_id) THEN
        RETURN QUERY SELECT * FROM routing._decision_row(p_agent_id, p_request_id);
        RETURN;
    END IF;

    SELECT * INTO v_agent FROM routing.agents a WHERE a.id = p_agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert_decision: unknown agent %', p_agent_id USING ERRCODE = 'no_data_found';
    END IF;

    -- The compact explanation (routing.explain_outcome
    -- gives the whole document back), from the task's route plan while it is current.
    -- The request is passed in for its deterministic quality draws.
    v_route     := routing._planned_explanation(v_agent.per_call_cap_usd, p_task_type, p_input_tokens, p_max_tokens, now(),
                                                p_agent_id, p_request_id);
    v_rule      := v_route ->> 'decision_rule';
    v_slug      := v_route ->> 'chosen_model_slug';
    v_projected := (v_route ->> 'projected_cost_usd')::numeric;

    -- Pre-dispatch checks.
    -- The daily cap is one conditional UPDATE of the agent's running
    -- spend (routing._reserve_budget); concurrent decisions of a capped agent queue on
    -- that row, so they cannot overspend. An uncapped decision is added to the day's row
    -- if one exists (the agent was capped earlier that day), so the row stays exact.
    IF v_agent.status <> 'active' THEN
        v_refusal := jsonb_build_object('reason', 'agent_not_active', 'agent_status', v_agent.status);
    ELSIF v_slug IS NOT NULL AND v_agent.daily_cap_usd IS NOT NULL THEN
        v_spent := routing._reserve_budget(p_agent_id, v_agent.daily_cap_usd, v_projected, now());
        IF v_spent IS NOT NULL THEN
            v_refusal := jsonb_build_object('reason', 'daily_cap_exceeded',
                                            'spent_today_usd', v_spent,
                                            'projected_cost_usd', v_projected,
                                            'daily_cap_usd', v_agent.daily_cap_usd);
        END IF;
    ELSIF v_slug IS NOT NULL AND EXISTS (SELECT FROM routing.budget_spend b WHERE b.agent_id = p_agent_id) THEN
        PERFORM routing._settle_budget(p_agent_id, now(), v_projected);
    END IF;

    IF v_refusal IS NOT NULL THEN
        v_rule   := 'failed_pre_dispatch';
        v_status := 'failed_pre_dispatch';
        v_route  := v_route || jsonb_build_object('refusal', v_refusal);
    ELSIF v_slug IS NULL THEN
        v_status := 'rejected';
    ELSE
        v_inference_id := nextval('routing.inferences_id_seq');
    END IF;

    -- The outcome already carries its first attempt's id; the deferred foreign key
    -- is satisfied by the next statement, before commit. On a partitioned ledger the
    -- request-key trigger reads routing.request_key_conflict: 'skip' makes a request
    -- already claimed this INSERT's race branch (no row) instead of a 23505. Set for this
    -- statement only, and the caller's value put back before anything else runs.
    v_key_conflict := pg_catalog.current_setting('routing.request_key_conflict', true);
    PERFORM pg_catalog.set_config('routing.request_key_conflict', 'skip', true);
    INSERT INTO routing.routing_outcomes AS o
           (request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
            min_quality, projected_cost_usd, explanation, inference_id, outcome_status,
            attempts, completed_at)
    VALUES (p_request_id, p_agent_id, v_agent.tenant_id, p_task_type, v_rule, v_slug,
            (v_route ->> 'min_quality')::numeric, v_projected, v_route,
            v_inference_id, v_status,
            CASE WHEN v_inference_id IS NULL THEN 0 ELSE 1 END,
            CASE WHEN v_status IS NOT NULL THEN clock_timestamp() END)
    ON CONFLICT DO NOTHING
    RETURNING o.id INTO v_outcome_id;
    PERFORM pg_catalog.set_config('routing.request_key_conflict', coalesce(v_key_conflict, ''), true);

    IF v_outcome_id IS NULL THEN
        -- A concurrent call with the same request won the race; it has committed.
        -- This call's reservation is given back.
        IF v_refusal IS NULL AND v_slug IS NOT NULL THEN
            PERFORM routing._settle_budget(p_agent_id, now(), -v_projected);
        END IF;
        RETURN QUERY SELECT * FROM routing._decision_row(p_agent_id, p_request_id);
        IF NOT FOUND THEN
            -- Partitioned ledger: the request's key outlived its outcome's partition
            -- (dropped by retention, the key not yet purged).
            RAISE EXCEPTION 'insert_decision: request % of agent % was decided, and its outcome is no longer retained',
                            p_request_id, p_agent_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'a request id is idempotent only while its outcome is retained; use a new request_id';
        END IF;
        RETURN;
    END IF;

    IF v_inference_id IS NOT NULL THEN
        -- input_tokens: the request's estimate, until a completion brings the provider's
        -- count; it is the input figure of a partial answer's cost.
        -- now(): the outcome's created_at (its default, this transaction's start).
        INSERT INTO routing.inferences
               (id, outcome_id, outcome_created_at, attempt_no, agent_id, model_slug, status,
                request_payload, input_tokens, streamed)
        VALUES (v_inference_id, v_outcome_id, now(), 1, p_agent_id, v_slug, 'routed',
                coalesce(p_request_payload, '{}'::jsonb), p_input_tokens, p_streamed);
    END IF;

    -- A first attempt is dispatched at once: not_before is NULL. The result row, without a
    -- query.
    outcome_id := v_outcome_id;
    inference_id := v_inference_id;
    decision_rule := v_rule;
    model_slug := v_slug;
    provider := v_route ->> 'provider';
    provider_model := v_route ->> 'provider_model';
    outcome_status := v_status;
    not_before := NULL;
    RETURN NEXT;
END
$$;

COMMIT;
