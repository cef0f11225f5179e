-- Revert routing_ledger:write_path from pg
--
-- Back to the released write path: the v0.2 functions are dropped, then the body of
-- deploy/write_path@v0.1.0.sql (below, unchanged) recreates the v0.1 ones with their
-- grants. Its CREATE TABLE IF NOT EXISTS and seed are no-ops on the existing policy.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- What v0.2 added or re-declared, so that the released script below recreates exactly
-- the v0.1 functions (same signatures, same result columns) and nothing else.
DROP FUNCTION routing.heartbeat_inference(bigint, int);
DROP FUNCTION routing.mark_first_token(bigint, int);
DROP FUNCTION routing.fail_inference(bigint, text, text, int, int, int, text);
DROP FUNCTION routing.complete_decision(bigint, jsonb, int, int, int, text);
DROP FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb, boolean);
DROP FUNCTION routing._decision_row(uuid, text);
DROP FUNCTION routing._cost_usd(text, int, int);
DROP FUNCTION routing._usage_sources();
DROP FUNCTION routing._client_error_codes();
-- Catalog-only: dropping a column does not rewrite the table.
ALTER TABLE routing.inferences RESET (fillfactor);
ALTER TABLE routing.inferences DROP COLUMN IF EXISTS outcome_created_at;

CREATE TABLE IF NOT EXISTS routing.retry_policy (
    error_code         text PRIMARY KEY CHECK (error_code IN (
                           'rate_limited', 'server_error', 'timeout', 'connection_error',
                           'bad_request', 'auth', 'client_error', 'abandoned')),
    -- Attempts on the same model after the first one, before `then_action`.
    same_model_retries int NOT NULL CHECK (same_model_retries >= 0),
    then_action        text NOT NULL CHECK (then_action IN ('failover', 'give_up')),
    base_backoff_ms    int NOT NULL DEFAULT 500 CHECK (base_backoff_ms >= 0),
    max_backoff_ms     int NOT NULL DEFAULT 30000 CHECK (max_backoff_ms >= 0),
    -- The outcome's terminal status when a request gives up after this error.
    give_up_status     text NOT NULL CHECK (give_up_status IN (
                           'failed_rate_limited', 'failed_provider', 'failed_timeout',
                           'failed_bad_request', 'failed_client', 'failed_abandoned'))
);
COMMENT ON TABLE routing.retry_policy IS
    'What fail_inference does after each error code: retry the same model (exponential backoff with jitter, never before Retry-After) up to same_model_retries times, then fail over to the next survivor or give up with give_up_status. routing.settings.max_attempts caps every request.';

INSERT INTO routing.retry_policy (error_code, same_model_retries, then_action, give_up_status) VALUES
    ('rate_limited',     2, 'failover', 'failed_rate_limited'),
    ('server_error',     0, 'failover', 'failed_provider'),
    ('timeout',          0, 'failover', 'failed_timeout'),
    ('connection_error', 0, 'failover', 'failed_provider'),
    ('auth',             0, 'failover', 'failed_provider'),
    ('bad_request',      0, 'give_up',  'failed_bad_request'),
    ('client_error',     0, 'give_up',  'failed_client'),
    ('abandoned',        0, 'give_up',  'failed_abandoned')
ON CONFLICT (error_code) DO NOTHING;

-- The row insert_decision returns, read back from the ledger: used for the idempotent
-- repeat and for the loser of a race on the same (agent_id, request_id); it runs on
-- every insert_decision. Its generic plan, cached once per session, is the unique index
-- (request_id, agent_id) whatever the statistics: no other index can answer it.
CREATE OR REPLACE FUNCTION routing._decision_row(p_agent_id uuid, p_request_id text)
RETURNS TABLE (outcome_id bigint, inference_id bigint, decision_rule text, model_slug text,
               provider text, provider_model text, outcome_status text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT o.id, o.inference_id, o.decision_rule, coalesce(i.model_slug, o.chosen_model_slug),
           m.provider, m.provider_model, o.outcome_status
      FROM routing.routing_outcomes o
      LEFT JOIN routing.inferences i ON i.id = o.inference_id
      LEFT JOIN routing.models m ON m.slug = coalesce(i.model_slug, o.chosen_model_slug)
     WHERE o.agent_id = p_agent_id AND o.request_id = p_request_id;
END
$$;

CREATE OR REPLACE FUNCTION routing.insert_decision(
    p_request_id      text,
    p_agent_id        uuid,
    p_task_type       text,
    p_input_tokens    int,
    p_max_tokens      int,
    p_request_payload jsonb DEFAULT '{}'
) RETURNS TABLE (outcome_id bigint, inference_id bigint, decision_rule text, model_slug text,
                 provider text, provider_model text, outcome_status text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
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
    v_tz           text;
    v_outcome_id   bigint;
    v_inference_id bigint;
BEGIN
    IF p_request_id IS NULL OR btrim(p_request_id) = '' THEN
        RAISE EXCEPTION 'insert_decision: p_request_id must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM routing._check_route_args('insert_decision', p_agent_id, p_task_type, p_input_tokens, p_max_tokens);

    -- Idempotent repeat: the request was already decided; return it, write nothing.
    RETURN QUERY SELECT * FROM routing._decision_row(p_agent_id, p_request_id);
    IF FOUND THEN
        RETURN;
    END IF;

    SELECT * INTO v_agent FROM routing.agents a WHERE a.id = p_agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert_decision: unknown agent %', p_agent_id USING ERRCODE = 'no_data_found';
    END IF;

    v_route     := routing._route(v_agent.per_call_cap_usd, p_task_type, p_input_tokens, p_max_tokens, now());
    v_rule      := v_route ->> 'decision_rule';
    v_slug      := v_route ->> 'chosen_model_slug';
    v_projected := (v_route ->> 'projected_cost_usd')::numeric;

    -- Pre-dispatch checks. A capped agent's decisions are serialised on its row so two
    -- gateways cannot both spend the last of the daily budget.
    IF v_agent.status <> 'active' THEN
        v_refusal := jsonb_build_object('reason', 'agent_not_active', 'agent_status', v_agent.status);
    ELSIF v_slug IS NOT NULL AND v_agent.daily_cap_usd IS NOT NULL THEN
        PERFORM FROM routing.agents a WHERE a.id = p_agent_id FOR NO KEY UPDATE;
        SELECT s.spend_day_time_zone INTO v_tz FROM routing.settings s;
        -- Settled cost of finished requests plus the projected cost of those in flight.
        SELECT coalesce(sum(coalesce(o.cost_actual_usd,
                                     CASE WHEN o.outcome_status IS NULL THEN o.projected_cost_usd END)), 0)
          INTO v_spent
          FROM routing.routing_outcomes o
         WHERE o.agent_id = p_agent_id
           AND o.created_at >= (date_trunc('day', now() AT TIME ZONE v_tz) AT TIME ZONE v_tz)
           AND o.projected_cost_usd IS NOT NULL;
        IF v_spent + v_projected > v_agent.daily_cap_usd THEN
            v_refusal := jsonb_build_object('reason', 'daily_cap_exceeded',
                                            'spent_today_usd', v_spent,
                                            'projected_cost_usd', v_projected,
                                            'daily_cap_usd', v_agent.daily_cap_usd);
        END IF;
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
    -- is satisfied by the next statement, before commit.
    INSERT INTO routing.routing_outcomes AS o
           (request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
            min_quality, projected_cost_usd, explanation, inference_id, outcome_status,
            attempts, completed_at)
    VALUES (p_request_id, p_agent_id, v_agent.tenant_id, p_task_type, v_rule, v_slug,
            (v_route ->> 'min_quality')::numeric, v_projected, v_route, v_inference_id, v_status,
            CASE WHEN v_inference_id IS NULL THEN 0 ELSE 1 END,
            CASE WHEN v_status IS NOT NULL THEN clock_timestamp() END)
    ON CONFLICT (agent_id, request_id) DO NOTHING
    RETURNING o.id INTO v_outcome_id;

    IF v_outcome_id IS NULL THEN
        -- A concurrent call with the same request won the race; it has committed.
        RETURN QUERY SELECT * FROM routing._decision_row(p_agent_id, p_request_id);
        RETURN;
    END IF;

    IF v_inference_id IS NOT NULL THEN
        INSERT INTO routing.inferences
               (id, outcome_id, attempt_no, agent_id, model_slug, status, request_payload, input_tokens)
        VALUES (v_inference_id, v_outcome_id, 1, p_agent_id, v_slug, 'routed',
                coalesce(p_request_payload, '{}'::jsonb), p_input_tokens);
    END IF;

    RETURN QUERY
    SELECT v_outcome_id, v_inference_id, v_rule, v_slug,
           v_route ->> 'provider', v_route ->> 'provider_model', v_status;
END
$$;

CREATE OR REPLACE FUNCTION routing.complete_decision(
    p_inference_id     bigint,
    p_response_payload jsonb,
    p_input_tokens     int,
    p_output_tokens    int,
    p_latency_ms       int
) RETURNS TABLE (outcome_id bigint, outcome_status text, cost_actual_usd numeric)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_inf  routing.inferences;
    v_out  routing.routing_outcomes;
    v_cost numeric;
    v_now  timestamptz := clock_timestamp();
BEGIN
    IF p_inference_id IS NULL THEN
        RAISE EXCEPTION 'complete_decision: p_inference_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_input_tokens IS NULL OR p_input_tokens < 0 THEN
        RAISE EXCEPTION 'complete_decision: p_input_tokens must be >= 0, got %', coalesce(p_input_tokens::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_output_tokens IS NULL OR p_output_tokens < 0 THEN
        RAISE EXCEPTION 'complete_decision: p_output_tokens must be >= 0, got %', coalesce(p_output_tokens::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_latency_ms IS NULL OR p_latency_ms < 0 THEN
        RAISE EXCEPTION 'complete_decision: p_latency_ms must be >= 0, got %', coalesce(p_latency_ms::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO v_inf FROM routing.inferences i WHERE i.id = p_inference_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'complete_decision: unknown inference %', p_inference_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_inf.status = 'succeeded' THEN
        -- Repeating the call: the first one won; return what it wrote.
        RETURN QUERY SELECT o.id, o.outcome_status, o.cost_actual_usd
                       FROM routing.routing_outcomes o WHERE o.id = v_inf.outcome_id;
        RETURN;
    END IF;
    IF v_inf.status = 'failed' THEN
        RAISE EXCEPTION 'complete_decision: inference % is already failed (%), it cannot succeed',
                        p_inference_id, v_inf.error_code
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN v_inf.error_code = 'abandoned'
                              THEN 'the reaper closed this attempt; the provider may still have done the work'
                              ELSE 'an attempt reaches one terminal state' END;
    END IF;
    IF v_inf.outcome_id IS NULL THEN
        RAISE EXCEPTION 'complete_decision: inference % belongs to no outcome (history from an older write path)', p_inference_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run routing.repair_orphans to re-link it, or routing.reap_stuck_inferences to close it';
    END IF;

    SELECT * INTO v_out FROM routing.routing_outcomes o WHERE o.id = v_inf.outcome_id FOR UPDATE;
    IF v_out.outcome_status IS NOT NULL THEN
        RAISE EXCEPTION 'complete_decision: outcome % of inference % is already %',
                        v_out.id, p_inference_id, v_out.outcome_status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    SELECT round(p_input_tokens * m.price_in_per_mtok_usd / 1e6
                 + p_output_tokens * m.price_out_per_mtok_usd / 1e6, 6)
      INTO v_cost
      FROM routing.models m WHERE m.slug = v_inf.model_slug;

    UPDATE routing.inferences i
       SET status = 'succeeded', response_payload = p_response_payload,
           input_tokens = p_input_tokens, output_tokens = p_output_tokens,
           cost_usd = v_cost, latency_ms = p_latency_ms, completed_at = v_now
     WHERE i.id = p_inference_id;

    UPDATE routing.routing_outcomes o
       SET outcome_status = 'succeeded', inference_id = p_inference_id,
           cost_actual_usd = v_cost, observed_latency_ms = p_latency_ms,
           judge_status = 'unlabeled', completed_at = v_now
     WHERE o.id = v_out.id;

    RETURN QUERY SELECT v_out.id, 'succeeded'::text, v_cost;
END
$$;

-- The decision fail_inference took for a failed attempt, read back from the ledger:
-- the next attempt if there is one (same model: retry, else failover), else give_up.
CREATE OR REPLACE FUNCTION routing._failure_decision(p_inference routing.inferences)
RETURNS TABLE (action text, outcome_id bigint, next_inference_id bigint, model_slug text,
               provider text, provider_model text, not_before timestamptz, outcome_status text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT CASE WHEN n.id IS NULL THEN 'give_up'
                WHEN n.model_slug = p_inference.model_slug THEN 'retry'
                ELSE 'failover' END,
           o.id, n.id, n.model_slug, m.provider, m.provider_model, n.not_before,
           -- The status this decision gave: terminal only when it gave up.
           CASE WHEN n.id IS NULL THEN o.outcome_status END
      FROM routing.routing_outcomes o
      LEFT JOIN routing.inferences n
             ON n.outcome_id = o.id AND n.attempt_no = p_inference.attempt_no + 1
      LEFT JOIN routing.models m ON m.slug = n.model_slug
     WHERE o.id = p_inference.outcome_id;
END
$$;

CREATE OR REPLACE FUNCTION routing.fail_inference(
    p_inference_id   bigint,
    p_error_code     text,
    p_error_message  text,
    p_http_status    int DEFAULT NULL,
    p_retry_after_ms int DEFAULT NULL
) RETURNS TABLE (action text, outcome_id bigint, next_inference_id bigint, model_slug text,
                 provider text, provider_model text, not_before timestamptz, outcome_status text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_inf       routing.inferences;
    v_out       routing.routing_outcomes;
    v_policy    routing.retry_policy;
    v_settings  routing.settings;
    v_now       timestamptz := clock_timestamp();
    v_on_model  int;
    v_tried     text[];
    v_action    text;
    v_next_slug text;
    v_not_before timestamptz;
    v_delay_ms  numeric;
    v_next_id   bigint;
    v_status    text;
BEGIN
    IF p_inference_id IS NULL THEN
        RAISE EXCEPTION 'fail_inference: p_inference_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_error_code IS NULL
       OR p_error_code NOT IN ('rate_limited', 'server_error', 'timeout', 'connection_error',
                               'bad_request', 'auth', 'client_error') THEN
        RAISE EXCEPTION 'fail_inference: unknown p_error_code %', coalesce(quote_literal(p_error_code), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'one of rate_limited, server_error, timeout, connection_error, bad_request, auth, client_error ('
                         || 'abandoned is set by the reaper only)';
    END IF;
    IF p_error_message IS NULL OR btrim(p_error_message) = '' THEN
        RAISE EXCEPTION 'fail_inference: p_error_message must be a non-empty string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_http_status IS NOT NULL AND p_http_status NOT BETWEEN 100 AND 599 THEN
        RAISE EXCEPTION 'fail_inference: p_http_status must be an HTTP status (100..599), got %', p_http_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_retry_after_ms IS NOT NULL AND p_retry_after_ms < 0 THEN
        RAISE EXCEPTION 'fail_inference: p_retry_after_ms must be >= 0, got %', p_retry_after_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO v_inf FROM routing.inferences i WHERE i.id = p_inference_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fail_inference: unknown inference %', p_inference_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_inf.status = 'succeeded' THEN
        RAISE EXCEPTION 'fail_inference: inference % already succeeded, it cannot fail', p_inference_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF v_inf.status = 'failed' THEN
        IF v_inf.error_code = p_error_code THEN
            -- Repeating the call: return the decision the first one took.
            RETURN QUERY SELECT * FROM routing._failure_decision(v_inf);
            RETURN;
        END IF;
        RAISE EXCEPTION 'fail_inference: inference % already failed with %, not %',
                        p_inference_id, v_inf.error_code, p_error_code
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN v_inf.error_code = 'abandoned'
                              THEN 'the reaper closed this attempt'
                              ELSE 'an attempt reaches one terminal state' END;
    END IF;
    IF v_inf.outcome_id IS NULL THEN
        RAISE EXCEPTION 'fail_inference: inference % belongs to no outcome (history from an older write path)', p_inference_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run routing.repair_orphans to re-link it, or routing.reap_stuck_inferences to close it';
    END IF;

    SELECT * INTO v_out FROM routing.routing_outcomes o WHERE o.id = v_inf.outcome_id FOR UPDATE;
    IF v_out.outcome_status IS NOT NULL THEN
        -- Only history can get here (a terminal outcome whose attempt was left routed):
        -- a new attempt on a finished request would be a second terminal state.
        RAISE EXCEPTION 'fail_inference: outcome % of inference % is already %',
                        v_out.id, p_inference_id, v_out.outcome_status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'routing.reap_stuck_inferences closes such an attempt';
    END IF;

    UPDATE routing.inferences i
       SET status = 'failed', error_code = p_error_code, error_message = left(p_error_message, 2000),
           http_status = p_http_status, retry_after_ms = p_retry_after_ms, completed_at = v_now
     WHERE i.id = p_inference_id;

    SELECT * INTO v_settings FROM routing.settings;
    SELECT * INTO v_policy FROM routing.retry_policy r WHERE r.error_code = p_error_code;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fail_inference: routing.retry_policy has no row for error_code %', p_error_code
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'restore the seeded row: the policy decides retry, failover or give-up';
    END IF;

    IF p_error_code = 'rate_limited' THEN
        -- Shared cooldown: every gateway process routes around this model for a while.
        INSERT INTO routing.model_cooldowns AS c (model_slug, cooling_until, last_inference_id, retry_after_ms, updated_at)
        VALUES (v_inf.model_slug,
                v_now + make_interval(secs => coalesce(p_retry_after_ms, v_settings.rate_limit_cooldown_ms) / 1000.0),
                p_inference_id, p_retry_after_ms, v_now)
        ON CONFLICT (model_slug) DO UPDATE
           SET cooling_until     = greatest(c.cooling_until, excluded.cooling_until),
               last_inference_id = excluded.last_inference_id,
               retry_after_ms    = excluded.retry_after_ms,
               updated_at        = excluded.updated_at;
    END IF;

    -- Every attempt of this request, through (outcome_id, attempt_no): the one index a
    -- plan cached while the ledger was empty cannot get wrong.
    SELECT count(*) FILTER (WHERE i.model_slug = v_inf.model_slug), array_agg(i.model_slug)
      INTO v_on_model, v_tried
      FROM routing.inferences i
     WHERE i.outcome_id = v_inf.outcome_id;

    IF v_inf.attempt_no >= v_settings.max_attempts THEN
        v_action := 'give_up';
    ELSIF v_on_model <= v_policy.same_model_retries THEN
        v_action    := 'retry';
        v_next_slug := v_inf.model_slug;
        -- Exponential backoff with equal jitter, never earlier than Retry-After (the
        -- contract's rule). The request's own retries follow the policy; the shared
        -- cooldown steers every other request (with a Retry-After the two coincide).
        v_delay_ms  := least(v_policy.max_backoff_ms, v_policy.base_backoff_ms * 2 ^ (v_on_model - 1));
        v_delay_ms  := greatest(v_delay_ms / 2 + random() * v_delay_ms / 2, coalesce(p_retry_after_ms, 0));
        v_not_before := v_now + make_interval(secs => v_delay_ms / 1000.0);
    ELSIF v_policy.then_action = 'failover' THEN
        -- The next survivor in rank order that this request has not tried and that is
        -- still enabled; one not cooling down first, else the one whose cooldown ends
        -- soonest, dispatched when it ends.
        SELECT c.slug, CASE WHEN cd.cooling_until > v_now THEN cd.cooling_until END
          INTO v_next_slug, v_not_before
          FROM jsonb_to_recordset(v_out.explanation -> 'candidates') AS c (slug text, rank int)
          JOIN routing.models m ON m.slug = c.slug AND m.enabled
          LEFT JOIN routing.model_cooldowns cd ON cd.model_slug = c.slug
         WHERE c.slug <> ALL (v_tried)
         ORDER BY coalesce(cd.cooling_until > v_now, false),
                  CASE WHEN cd.cooling_until > v_now THEN cd.cooling_until END NULLS FIRST,
                  c.rank
         LIMIT 1;
        v_action := CASE WHEN v_next_slug IS NULL THEN 'give_up' ELSE 'failover' END;
    ELSE
        v_action := 'give_up';
    END IF;

    IF v_action = 'give_up' THEN
        v_status := v_policy.give_up_status;
        UPDATE routing.routing_outcomes o
           SET outcome_status = v_status, completed_at = v_now
         WHERE o.id = v_out.id;
        RETURN QUERY SELECT 'give_up'::text, v_out.id, NULL::bigint, NULL::text, NULL::text,
                            NULL::text, NULL::timestamptz, v_status;
        RETURN;
    END IF;

    INSERT INTO routing.inferences AS i
           (outcome_id, attempt_no, agent_id, model_slug, status, not_before, request_payload, input_tokens)
    VALUES (v_out.id, v_inf.attempt_no + 1, v_inf.agent_id, v_next_slug, 'routed', v_not_before,
            v_inf.request_payload, v_inf.input_tokens)
    RETURNING i.id INTO v_next_id;

    UPDATE routing.routing_outcomes o
       SET inference_id = v_next_id, attempts = v_inf.attempt_no + 1
     WHERE o.id = v_out.id;

    RETURN QUERY
    SELECT v_action, v_out.id, v_next_id, v_next_slug, m.provider, m.provider_model, v_not_before, NULL::text
      FROM routing.models m WHERE m.slug = v_next_slug;
END
$$;

COMMENT ON FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb) IS
    'Routes one request and records it atomically, in one transaction: the outcome and, when a model is dispatched, its first routed attempt, linked both ways from the first statement on. No candidate: the outcome is written rejected. Suspended agent or daily cap exceeded: written failed_pre_dispatch. Idempotent on (agent_id, request_id): a repeat returns the existing row and writes nothing. 22023 on a bad argument, P0002 on an unknown agent.';
COMMENT ON FUNCTION routing.complete_decision(bigint, jsonb, int, int, int) IS
    'Marks a routed attempt succeeded (cost from catalog prices) and its outcome succeeded and judgeable (judge_status unlabeled). Repeating it returns the same row and writes nothing. 55000 if the attempt already failed (the reaper included), P0002 if unknown, 22023 on a bad argument.';
COMMENT ON FUNCTION routing.fail_inference(bigint, text, text, int, int) IS
    'Marks a routed attempt failed and, in the same transaction, applies routing.retry_policy: retry the same model (not_before = backoff with jitter, never before Retry-After), fail over to the next survivor, or give up (outcome terminal with the failed_* status, linked to this last attempt). A 429 also puts the model into the shared cooldown. The outcome always points at its newest attempt. Repeating it with the same error_code returns the earlier decision; a different code raises 55000.';

REVOKE ALL ON FUNCTION routing._decision_row(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._failure_decision(routing.inferences) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.complete_decision(bigint, jsonb, int, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.fail_inference(bigint, text, text, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb) TO routing_app;
GRANT EXECUTE ON FUNCTION routing.complete_decision(bigint, jsonb, int, int, int) TO routing_app;
GRANT EXECUTE ON FUNCTION routing.fail_inference(bigint, text, text, int, int) TO routing_app;
REVOKE ALL ON routing.retry_policy FROM PUBLIC;
GRANT SELECT ON routing.retry_policy TO routing_readonly;

COMMIT;
