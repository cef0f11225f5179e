-- Deploy routing_ledger:write_path to pg
-- requires: write_path@v0.3.0
-- requires: route_plans
-- requires: model_prices
-- requires: usage_classes
--
-- The atomic write path: insert_decision, complete_decision, fail_inference, and, for
-- streams, mark_first_token and heartbeat_inference. Each is one round trip and one
-- transaction, and returns what the client needs to act without another query.
--
-- Guarantees and why:
-- - insert_decision writes the outcome and, when a model is dispatched, its first attempt
--   (routed) in one transaction: the outcome already carries the attempt's id (drawn
--   from its sequence first) and the deferred foreign key is satisfied before commit, so
--   the CHECK outcome_requires_inference_when_model_chosen holds on every statement.
--   A repeat of (agent_id, request_id) returns the existing row, with its open attempt's
--   not_before (the caller dispatches no earlier), and writes nothing; two racing calls
--   end with one outcome, the loser reading the winner's. No candidate: the outcome is
--   written rejected; a suspended agent or an exceeded daily cap: failed_pre_dispatch.
-- - complete_decision makes the outcome succeeded and judgeable (judge_status unlabeled);
--   an embeddings call completes with p_output_tokens = 0.
-- - fail_inference decides in the same transaction: after the first token
--   (mark_first_token) every error gives up (failed_stream_interrupted, or cancelled);
--   cancelled always gives up; otherwise routing.retry_policy: retry the same model
--   (not_before = backoff with jitter, never before Retry-After), fail over to the next
--   survivor, or give up (the outcome terminal with the failed_* status and the attempt's
--   cost, linked to that last attempt, never judged). A 429 also puts the model into the
--   shared cooldown. A repeat with the same error_code returns the earlier decision.
-- - Lock order: the ledger first (insert_decision's repeat probe is its first read of
--   routing_outcomes, before the agent, the route plan and the attempt sequence), then,
--   in complete_decision and fail_inference, the attempt (one UPDATE of it while open)
--   and then its outcome. Two gateways, the reaper, a late completion and a
--   layout switch (which locks the ledger first) cannot deadlock.
-- - A transition is one UPDATE ... RETURNING; only when it finds no routed attempt does
--   the function read why, then return the earlier result of a repeat or raise (55000
--   for a state that does not allow it, P0002 for an unknown id). An error after the
--   UPDATE undoes it: nothing is half-written.
-- - Arguments are checked before any row is read: one inline test accepts the usual
--   call; any other goes through the routing._require_* checks, which decide and name
--   what is wrong (22023). The inline test may refuse what those accept, never accept
--   what they refuse. Bounds: p_request_id 1..255 characters, p_task_type at most 64,
--   token counts and latencies 0..2^31-1, p_http_status 100..599.
-- - Costs: an unknown usage is a NULL cost, never 0. A partial answer (a stream that
--   broke or was cancelled after its first token) costs its input plus its partial
--   output; a failed or cancelled outcome is never judged.
-- - Costs by token class (v0.3): complete_decision and fail_inference take p_usage, the
--   usage beyond the two totals (cache reads, cache writes, 1-hour cache writes,
--   reasoning tokens, the provider's own cost), checked key by key (22023, nothing
--   written; routing._usage_parts) and stored on the attempt. The cost is
--   routing._attempt_cost: each class at its rate in force at the attempt's created_at,
--   for the request's long-context tier, to 10 decimals. The v0.2 signatures are
--   dropped and recreated with p_usage DEFAULT NULL in this transaction, re-granted.
-- - A transition finds its attempt and its outcome by primary key, so its cost does not
--   grow with the requests in flight. "Still open" is written completed_at IS NULL, the
--   CHECKed twin of status = 'routed' (rule inference_routed_iff_open) and of
--   outcome_status IS NULL (rule outcome_terminal_iff_completed; both in the CHECKs of
--   change ledger_rules): no partial index of open rows matches it.
--   Written as the status, the cached generic plan may scan such an index (statistics
--   taken while few requests were open make it look cheaper than the key), visiting
--   every open row on every call (tests/python/test_write_path_plans.py).
-- - Never JIT-compiled (SET jit = off, inherited by what they call): a generic plan's
--   estimate on a large ledger can pass jit_above_cost, and compiling costs ~100 ms per
--   call for index lookups that take microseconds.
-- - Nothing here needs a superuser. The partitioned ledger's request-key trigger learns
--   that insert_decision's INSERT is its race branch from routing.request_key_conflict,
--   set with set_config(..., true) around that one statement and restored before
--   anything else runs (a function SET clause on a placeholder parameter is a
--   superuser's privilege on PostgreSQL 15 and later).
--
-- History: docs/CHANGELOG.md. Measured: docs/performance.md.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- The v0.2 signatures: recreated below with p_usage.
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing.complete_decision(bigint, jsonb, int, int, int, text);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing.fail_inference(bigint, text, text, int, int, int, text);

-- The error codes a client may report: the CHECK on inferences.error_code less the
-- reaper's own 'abandoned'. What each one does is routing.retry_policy's.
CREATE OR REPLACE FUNCTION routing._client_error_codes()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['rate_limited', 'server_error', 'timeout', 'connection_error',
                 'bad_request', 'auth', 'client_error', 'stream_interrupted', 'cancelled']
$$;

-- How usage was counted: the CHECK inference_usage_source_known, for arguments.
CREATE OR REPLACE FUNCTION routing._usage_sources()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['provider', 'estimated']
$$;

-- A cost at the model's catalog prices, rounded like every cost in the ledger. NULL
-- when either count is unknown: an unknown usage is never a cost of 0.
-- PL/pgSQL (its plan is cached per session), no SET clause (called once per request),
-- every name qualified.
CREATE OR REPLACE FUNCTION routing._cost_usd(p_model_slug text, p_input_tokens int, p_output_tokens int)
RETURNS numeric
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_input_tokens IS NULL OR p_output_tokens IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT pg_catalog.round(p_input_tokens * m.price_in_per_mtok_usd / 1e6
                                    + p_output_tokens * m.price_out_per_mtok_usd / 1e6, 6)
              FROM routing.models m
             WHERE m.slug = p_model_slug);
END
$$;

-- The row insert_decision returns, read back from the ledger: used for the idempotent
-- repeat and for the loser of a race on the same (agent_id, request_id); it runs on
-- every insert_decision. Its generic plan, cached once per session, is the unique index
-- (request_id, agent_id) whatever the statistics: no other index can answer it.
CREATE OR REPLACE FUNCTION routing._decision_row(p_agent_id uuid, p_request_id text)
RETURNS TABLE (outcome_id bigint, inference_id bigint, decision_rule text, model_slug text,
               provider text, provider_model text, outcome_status text, not_before timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT o.id, o.inference_id, o.decision_rule, coalesce(i.model_slug, o.chosen_model_slug),
           m.provider, m.provider_model, o.outcome_status,
           CASE WHEN i.status = 'routed' THEN i.not_before END
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
    v_set          text;
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
    v_route     := routing._explain_from_plan(v_agent.per_call_cap_usd, p_task_type, p_input_tokens, p_max_tokens, now(),
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
    -- (Assignments, not PERFORM: a plain expression, evaluated without a query.)
    v_set := pg_catalog.set_config('routing.request_key_conflict', 'skip', true);
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
    v_set := pg_catalog.set_config('routing.request_key_conflict', coalesce(v_key_conflict, ''), true);

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

-- The end of complete_decision's and fail_inference's diagnosis of an attempt their
-- UPDATE did not find routed, once each has answered a repeat and refused a closed
-- attempt: an attempt of no outcome (history from an older write path; 55000), else one
-- that was routed again by the time it was read, so it changed in between (40001). Raises,
-- always. Ids, not the row: a function taking a ledger table's row type would tie itself
-- to that table, which a layout switch replaces.
CREATE OR REPLACE FUNCTION routing._raise_unlinked_or_changed(p_fn text, p_inference_id bigint,
                                                             p_outcome_id bigint, p_transition text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_outcome_id IS NULL THEN
        RAISE EXCEPTION '%: inference % belongs to no outcome (history from an older write path)', p_fn, p_inference_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run routing.repair_orphans to re-link it, or routing.reap_stuck_inferences to close it';
    END IF;
    RAISE EXCEPTION '%: inference % changed while it was being %', p_fn, p_inference_id, p_transition
        USING ERRCODE = 'serialization_failure', HINT = 'repeat the call';
END
$$;

CREATE OR REPLACE FUNCTION routing.complete_decision(
    p_inference_id     bigint,
    p_response_payload jsonb,
    p_input_tokens     int,
    p_output_tokens    int,
    p_latency_ms       int,
    p_usage_source     text DEFAULT 'provider',
    p_usage            jsonb DEFAULT NULL
) RETURNS TABLE (outcome_id bigint, outcome_status text, cost_actual_usd numeric)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_inf        routing.inferences;
    v_outcome_id bigint;
    v_cost       numeric;
    v_now        timestamptz := clock_timestamp();
    v_cache_read      int;
    v_cache_write     int;
    v_cache_write_1h  int;
    v_reasoning       int;
    v_provider_cost   numeric;
BEGIN
    IF (p_inference_id IS NOT NULL AND p_input_tokens >= 0 AND p_output_tokens >= 0
        AND p_latency_ms >= 0 AND p_usage_source = ANY (routing._usage_sources())) IS NOT TRUE THEN
        PERFORM routing._require_not_null('complete_decision', 'p_inference_id', p_inference_id);
        PERFORM routing._require_int('complete_decision', 'p_input_tokens', p_input_tokens);
        PERFORM routing._require_int('complete_decision', 'p_output_tokens', p_output_tokens);
        PERFORM routing._require_int('complete_decision', 'p_latency_ms', p_latency_ms);
        PERFORM routing._require_member('complete_decision', 'p_usage_source', p_usage_source, routing._usage_sources());
    END IF;
    IF p_usage IS NOT NULL THEN
        SELECT u.* INTO v_cache_read, v_cache_write, v_cache_write_1h, v_reasoning, v_provider_cost
          FROM routing._usage_parts('complete_decision', p_usage, p_input_tokens, p_output_tokens) u;
    END IF;

    -- The transition itself: the routed attempt, then its open outcome, one UPDATE each.
    UPDATE routing.inferences i
       SET status = 'succeeded', response_payload = p_response_payload,
           input_tokens = p_input_tokens, output_tokens = p_output_tokens,
           usage_source = p_usage_source,
           cache_read_tokens = v_cache_read, cache_write_tokens = v_cache_write,
           cache_write_1h_tokens = v_cache_write_1h, reasoning_tokens = v_reasoning,
           provider_cost_usd = v_provider_cost,
           cost_usd = routing._attempt_cost(i.model_slug, i.created_at, p_input_tokens, p_output_tokens,
                                            v_cache_read, v_cache_write, v_cache_write_1h),
           latency_ms = p_latency_ms, completed_at = v_now
     WHERE i.id = p_inference_id AND i.completed_at IS NULL AND i.outcome_id IS NOT NULL
    RETURNING i.outcome_id, i.cost_usd INTO v_outcome_id, v_cost;
    IF FOUND THEN
        UPDATE routing.routing_outcomes o
           SET outcome_status = 'succeeded', inference_id = p_inference_id,
               cost_actual_usd = v_cost, observed_latency_ms = p_latency_ms,
               judge_status = 'unlabeled', completed_at = v_now
         WHERE o.id = v_outcome_id AND o.completed_at IS NULL;
        IF NOT FOUND THEN
            -- Only history gets here: a terminal outcome whose attempt was left routed.
            -- The error undoes the attempt's update.
            RAISE EXCEPTION 'complete_decision: outcome % of inference % is already %',
                            v_outcome_id, p_inference_id,
                            (SELECT o.outcome_status FROM routing.routing_outcomes o WHERE o.id = v_outcome_id)
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        -- The result row, without a query.
        outcome_id := v_outcome_id;
        outcome_status := 'succeeded';
        cost_actual_usd := v_cost;
        RETURN NEXT;
        RETURN;
    END IF;

    -- Not a routed attempt of an outcome: why not. (An attempt that is closed never
    -- changes again, so this reads without a lock.)
    SELECT * INTO v_inf FROM routing.inferences i WHERE i.id = p_inference_id;
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
    PERFORM routing._raise_unlinked_or_changed('complete_decision', p_inference_id, v_inf.outcome_id, 'completed');
END
$$;

-- The ranked candidates of a stored explanation, every one of them: failover's list
-- (stage 5 of an explanation; the stages are listed in deploy/route_plans.sql).
CREATE OR REPLACE FUNCTION routing._expand_candidates(p_explanation jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    IF p_explanation IS NULL OR NOT p_explanation ? 'snapshot'
       OR (p_explanation ->> 'candidate_count')::int <= jsonb_array_length(p_explanation -> 'candidates') THEN
        RETURN p_explanation -> 'candidates';
    END IF;
    -- Failover reads slug and rank only, which a snapshot keeps as they were.
    RETURN (SELECT s.candidates FROM routing.route_snapshots s
             WHERE s.snapshot_key = decode(p_explanation ->> 'snapshot', 'hex'));
END
$$;

-- The old name (route_snapshots), put back by the revert.
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._route_candidates(jsonb);

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
    p_retry_after_ms int DEFAULT NULL,
    p_output_tokens  int DEFAULT NULL,
    p_usage_source   text DEFAULT NULL,
    p_usage          jsonb DEFAULT NULL
) RETURNS TABLE (action text, outcome_id bigint, next_inference_id bigint, model_slug text,
                 provider text, provider_model text, not_before timestamptz, outcome_status text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
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
    v_next_provider text;
    v_next_provider_model text;
    v_not_before timestamptz;
    v_delay_ms  numeric;
    v_next_id   bigint;
    v_status    text;
    v_cost      numeric;
    v_cache_read      int;
    v_cache_write     int;
    v_cache_write_1h  int;
    v_reasoning       int;
    v_provider_cost   numeric;
BEGIN
    IF (p_inference_id IS NOT NULL AND p_error_code = ANY (routing._client_error_codes())
        AND p_error_message ~ '[^[:space:]]'
        AND (p_http_status IS NULL OR p_http_status BETWEEN 100 AND 599)
        AND (p_retry_after_ms IS NULL OR p_retry_after_ms >= 0)
        AND (p_output_tokens IS NULL OR p_output_tokens >= 0)
        AND (p_usage_source IS NULL OR p_usage_source = ANY (routing._usage_sources()))) IS NOT TRUE THEN
        PERFORM routing._require_not_null('fail_inference', 'p_inference_id', p_inference_id);
        IF p_error_code IS NULL OR NOT (p_error_code = ANY (routing._client_error_codes())) THEN
            RAISE EXCEPTION 'fail_inference: unknown p_error_code %',
                            coalesce(quote_literal(left(p_error_code, 64)), 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'one of ' || array_to_string(routing._client_error_codes(), ', ')
                             || ' (abandoned is set by the reaper only)';
        END IF;
        PERFORM routing._require_text('fail_inference', 'p_error_message', p_error_message, 2147483647);
        PERFORM routing._require_int('fail_inference', 'p_http_status', p_http_status, 100, 599, true);
        PERFORM routing._require_int('fail_inference', 'p_retry_after_ms', p_retry_after_ms, p_nullable => true);
        PERFORM routing._require_int('fail_inference', 'p_output_tokens', p_output_tokens, p_nullable => true);
        PERFORM routing._require_member('fail_inference', 'p_usage_source', p_usage_source, routing._usage_sources(), true);
    END IF;
    IF p_usage IS NOT NULL THEN
        SELECT u.* INTO v_cache_read, v_cache_write, v_cache_write_1h, v_reasoning, v_provider_cost
          FROM routing._usage_parts('fail_inference', p_usage) u;
        -- The totals are the attempt's (the request's input estimate, the partial output):
        -- read only when parts were reported, so the usual failure costs no extra lookup.
        IF coalesce(v_cache_read, v_cache_write, v_cache_write_1h, v_reasoning) IS NOT NULL THEN
            PERFORM routing._require_usage_within('fail_inference', v_cache_read, v_cache_write, v_cache_write_1h,
                                                  v_reasoning, i.input_tokens, coalesce(p_output_tokens, i.output_tokens))
               FROM routing.inferences i WHERE i.id = p_inference_id AND i.completed_at IS NULL;
        END IF;
    END IF;

    -- The transition itself, one UPDATE of the routed attempt. The output produced before
    -- the failure: this call's count, else the last heartbeat's. Known output makes a cost
    -- (input + partial output); unknown stays NULL.
    UPDATE routing.inferences i
       SET status = 'failed', error_code = p_error_code, error_message = left(p_error_message, 2000),
           http_status = p_http_status, retry_after_ms = p_retry_after_ms,
           output_tokens = coalesce(p_output_tokens, i.output_tokens),
           usage_source = CASE WHEN coalesce(p_output_tokens, i.output_tokens) IS NOT NULL
                               THEN coalesce(p_usage_source, i.usage_source, 'estimated') END,
           cache_read_tokens = v_cache_read, cache_write_tokens = v_cache_write,
           cache_write_1h_tokens = v_cache_write_1h, reasoning_tokens = v_reasoning,
           provider_cost_usd = v_provider_cost,
           cost_usd = CASE WHEN coalesce(p_output_tokens, i.output_tokens) IS NOT NULL
                           THEN routing._attempt_cost(i.model_slug, i.created_at, i.input_tokens,
                                                      coalesce(p_output_tokens, i.output_tokens),
                                                      v_cache_read, v_cache_write, v_cache_write_1h) END,
           completed_at = v_now
     WHERE i.id = p_inference_id AND i.completed_at IS NULL AND i.outcome_id IS NOT NULL
    RETURNING i.* INTO v_inf;
    IF NOT FOUND THEN
        -- Not a routed attempt of an outcome: why not. (An attempt that is closed never
        -- changes again, so this reads without a lock.)
        SELECT * INTO v_inf FROM routing.inferences i WHERE i.id = p_inference_id;
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
        PERFORM routing._raise_unlinked_or_changed('fail_inference', p_inference_id, v_inf.outcome_id, 'failed');
    END IF;
    v_cost := v_inf.cost_usd;

    -- Every error below undoes the attempt's update. The outcome is read without a lock
    -- (a row lock is a write): what this call needs of it, its explanation and created_at,
    -- never changes, and every writer that could end it first takes its routed attempt,
    -- whose lock this call holds. The outcome's own UPDATE below locks it and checks again
    -- that it is still open.
    SELECT * INTO v_out FROM routing.routing_outcomes o WHERE o.id = v_inf.outcome_id;
    IF v_out.outcome_status IS NOT NULL THEN
        -- Only history can get here (a terminal outcome whose attempt was left routed):
        -- a new attempt on a finished request would be a second terminal state.
        RAISE EXCEPTION 'fail_inference: outcome % of inference % is already %',
                        v_out.id, p_inference_id, v_out.outcome_status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'routing.reap_stuck_inferences closes such an attempt';
    END IF;

    SELECT * INTO v_policy FROM routing.retry_policy r WHERE r.error_code = p_error_code;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fail_inference: routing.retry_policy has no row for error_code %', p_error_code
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'restore the seeded row: the policy decides retry, failover or give-up';
    END IF;

    SELECT * INTO v_settings FROM routing.settings;

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

    IF v_inf.first_token_at IS NOT NULL THEN
        -- The caller has seen output from this attempt: another attempt would hand it a
        -- second, different answer. Whatever the error, the request ends here.
        v_action := 'give_up';
        v_status := CASE WHEN p_error_code = 'cancelled' THEN 'cancelled' ELSE 'failed_stream_interrupted' END;
    ELSIF v_inf.attempt_no >= v_settings.max_attempts THEN
        v_action := 'give_up';
    ELSE
        -- Every attempt of this request, through (outcome_id, attempt_no): the one index a
        -- plan cached while the ledger was empty cannot get wrong.
        SELECT (count(*) FILTER (WHERE i.model_slug = v_inf.model_slug))::int, array_agg(i.model_slug)
          INTO v_on_model, v_tried
          FROM routing.inferences i
         WHERE i.outcome_id = v_inf.outcome_id;

        IF v_on_model <= v_policy.same_model_retries THEN
            v_action    := 'retry';
            v_next_slug := v_inf.model_slug;
            -- Exponential backoff with equal jitter, never earlier than Retry-After (the
            -- contract's rule). The request's own retries follow the policy; the shared
            -- cooldown steers every other request (with a Retry-After the two coincide).
            v_delay_ms  := least(v_policy.max_backoff_ms, v_policy.base_backoff_ms * 2::numeric ^ (v_on_model - 1));
            v_delay_ms  := greatest(v_delay_ms / 2 + random()::numeric * v_delay_ms / 2, coalesce(p_retry_after_ms, 0));
            v_not_before := v_now + make_interval(secs => v_delay_ms / 1000.0);
            SELECT m.provider, m.provider_model INTO v_next_provider, v_next_provider_model
              FROM routing.models m WHERE m.slug = v_next_slug;
        ELSIF v_policy.then_action = 'failover' THEN
            -- The next survivor in rank order that this request has not tried and that is
            -- still enabled; one not cooling down first, else the one whose cooldown ends
            -- soonest, dispatched when it ends.
            SELECT c.slug, CASE WHEN cd.cooling_until > v_now THEN cd.cooling_until END,
                   m.provider, m.provider_model
              INTO v_next_slug, v_not_before, v_next_provider, v_next_provider_model
              -- Every ranked candidate, from the shared snapshot
              FROM jsonb_to_recordset(routing._expand_candidates(v_out.explanation)) AS c (slug text, rank int)
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
    END IF;

    IF v_action = 'give_up' THEN
        v_status := coalesce(v_status, v_policy.give_up_status);
        -- The outcome ends on this attempt and carries its cost (a partial answer's, or
        -- NULL when nothing is known). Never a judge_status: only a success is judged.
        UPDATE routing.routing_outcomes o
           SET outcome_status = v_status, cost_actual_usd = v_cost, completed_at = v_now
         WHERE o.id = v_out.id AND o.completed_at IS NULL;
        IF NOT FOUND THEN
            -- Ended since it was read, by a write that did not go through its attempt.
            RAISE EXCEPTION 'fail_inference: outcome % of inference % is already %', v_out.id, p_inference_id,
                            (SELECT o.outcome_status FROM routing.routing_outcomes o WHERE o.id = v_out.id)
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        action := 'give_up';
        outcome_id := v_out.id;
        outcome_status := v_status;
        RETURN NEXT;
        RETURN;
    END IF;

    INSERT INTO routing.inferences AS i
           (outcome_id, outcome_created_at, attempt_no, agent_id, model_slug, status, not_before,
            request_payload, input_tokens, streamed)
    VALUES (v_out.id, v_out.created_at, v_inf.attempt_no + 1, v_inf.agent_id, v_next_slug, 'routed',
            v_not_before, v_inf.request_payload, v_inf.input_tokens, v_inf.streamed)
    RETURNING i.id INTO v_next_id;

    UPDATE routing.routing_outcomes o
       SET inference_id = v_next_id, attempts = v_inf.attempt_no + 1
     WHERE o.id = v_out.id AND o.completed_at IS NULL;
    IF NOT FOUND THEN
        -- Ended since it was read, by a write that did not go through its attempt.
        RAISE EXCEPTION 'fail_inference: outcome % of inference % is already %', v_out.id, p_inference_id,
                        (SELECT o.outcome_status FROM routing.routing_outcomes o WHERE o.id = v_out.id)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- The result row, without a query.
    action := v_action;
    outcome_id := v_out.id;
    next_inference_id := v_next_id;
    model_slug := v_next_slug;
    provider := v_next_provider;
    provider_model := v_next_provider_model;
    not_before := v_not_before;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION routing.mark_first_token(
    p_inference_id bigint,
    p_ttft_ms      int
) RETURNS TABLE (outcome_id bigint, first_token_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_outcome_id bigint;
    v_first      timestamptz;
    v_status     text;
BEGIN
    IF (p_inference_id IS NOT NULL AND p_ttft_ms >= 0) IS NOT TRUE THEN
        PERFORM routing._require_not_null('mark_first_token', 'p_inference_id', p_inference_id);
        PERFORM routing._require_int('mark_first_token', 'p_ttft_ms', p_ttft_ms);
    END IF;

    -- Only the attempt's row: nothing else changes, so no outcome lock.
    UPDATE routing.inferences i
       SET first_token_at = clock_timestamp(), ttft_ms = p_ttft_ms
     WHERE i.id = p_inference_id AND i.completed_at IS NULL
       AND i.first_token_at IS NULL AND i.outcome_id IS NOT NULL
    RETURNING i.outcome_id, i.first_token_at INTO v_outcome_id, v_first;
    IF FOUND THEN
        RETURN QUERY SELECT v_outcome_id, v_first;
        RETURN;
    END IF;

    SELECT i.outcome_id, i.first_token_at, i.status INTO v_outcome_id, v_first, v_status
      FROM routing.inferences i WHERE i.id = p_inference_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mark_first_token: unknown inference %', p_inference_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_first IS NOT NULL THEN
        -- A repeat returns the first stamp, whatever happened since.
        RETURN QUERY SELECT v_outcome_id, v_first;
        RETURN;
    END IF;
    IF v_outcome_id IS NULL THEN
        RAISE EXCEPTION 'mark_first_token: inference % belongs to no outcome (history from an older write path)', p_inference_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RAISE EXCEPTION 'mark_first_token: inference % is already % and never forwarded output', p_inference_id, v_status
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'only a routed attempt can start forwarding output; stop streaming it';
END
$$;

CREATE OR REPLACE FUNCTION routing.heartbeat_inference(
    p_inference_id  bigint,
    p_output_tokens int DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF (p_inference_id IS NOT NULL AND (p_output_tokens IS NULL OR p_output_tokens >= 0)) IS NOT TRUE THEN
        PERFORM routing._require_not_null('heartbeat_inference', 'p_inference_id', p_inference_id);
        PERFORM routing._require_int('heartbeat_inference', 'p_output_tokens', p_output_tokens, p_nullable => true);
    END IF;

    -- One UPDATE by primary key; heartbeat_at and output_tokens are in no index, so it
    -- can be a HOT update.
    UPDATE routing.inferences i
       SET heartbeat_at = clock_timestamp(),
           output_tokens = coalesce(p_output_tokens, i.output_tokens)
     WHERE i.id = p_inference_id AND i.completed_at IS NULL;
    IF FOUND THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT FROM routing.inferences i WHERE i.id = p_inference_id) THEN
        RAISE EXCEPTION 'heartbeat_inference: unknown inference %', p_inference_id USING ERRCODE = 'no_data_found';
    END IF;
    -- Closed by someone else (the reaper, a repeat of the caller's own failure): stop.
    RETURN false;
END
$$;

COMMENT ON FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb, boolean) IS
    'Routes a request, writing its outcome and first routed attempt in one transaction. No candidate: rejected; agent suspended or over its daily cap: failed_pre_dispatch. A repeat (agent_id, request_id) writes nothing, returns the row and not_before. 22023 on a bad argument, P0002 on an unknown agent.';
COMMENT ON FUNCTION routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb) IS
    'Marks a routed attempt succeeded (p_usage kept, cost_usd by token class at the rates in force at its created_at) and its outcome succeeded, for the judge. A repeat returns the same row and writes nothing. 55000 if the attempt already failed, P0002 if unknown, 22023 on a bad argument.';
COMMENT ON FUNCTION routing.fail_inference(bigint, text, text, int, int, int, text, jsonb) IS
    'Marks a routed attempt failed (partial output and cost kept) and decides at once by routing.retry_policy: retry, fail over or give up (always after the first token); a 429 cools the model down. A repeat returns that decision; another error_code: 55000. 22023 on a bad argument, P0002 if unknown.';
COMMENT ON FUNCTION routing.mark_first_token(bigint, int) IS
    'The routed attempt started forwarding output: stamps first_token_at and ttft_ms; from then on fail_inference gives up on any error. A repeat returns the first stamp. 55000 if the attempt closed without one, P0002 if unknown, 22023 on a bad argument.';
COMMENT ON FUNCTION routing.heartbeat_inference(bigint, int) IS
    'A running stream is alive: stamps heartbeat_at (the reaper counts age from it) and, when given, the partial output_tokens. Returns true while the attempt is routed, false once it is closed (by the reaper, say): stop streaming. P0002 if unknown, 22023 on a bad argument (NULL id, negative count).';

REVOKE ALL ON FUNCTION routing._client_error_codes() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._usage_sources() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._cost_usd(text, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._raise_unlinked_or_changed(text, bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._decision_row(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._failure_decision(routing.inferences) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._expand_candidates(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.fail_inference(bigint, text, text, int, int, int, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.mark_first_token(bigint, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.heartbeat_inference(bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb, boolean) TO routing_app;
GRANT EXECUTE ON FUNCTION routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb) TO routing_app;
GRANT EXECUTE ON FUNCTION routing.fail_inference(bigint, text, text, int, int, int, text, jsonb) TO routing_app;
GRANT EXECUTE ON FUNCTION routing.mark_first_token(bigint, int) TO routing_app;
GRANT EXECUTE ON FUNCTION routing.heartbeat_inference(bigint, int) TO routing_app;

COMMIT;
