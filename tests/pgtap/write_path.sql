-- pgTAP for the write_path change: insert_decision, complete_decision, fail_inference
-- and the seeded retry policy.
--
-- Ids returned by the functions are kept in psql variables (\gset) and spliced into the
-- SQL under test with format(). "Writes nothing" is measured with pg_temp.fingerprint()
-- (helpers/fingerprint.sql), a digest of every ledger, cooldown and daily-spend row.
BEGIN;
SELECT plan(131);

------------------------------------------------------------------------------ helpers

\ir helpers/error_of.sql
\ir helpers/fingerprint.sql

-- Fixture. general's floor is 0.68; reasoning's 0.88 is above every model here.
-- For 1000 input / 500 max tokens: w_cheap projects 0.002, w_mid 0.0035, w_top 0.0075,
-- so agent "single" (per-call cap 0.0021) has exactly one candidate.
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('w_cheap', 'p1', 'cheap-1', 1, 2, 0.80, true),
       ('w_mid',   'p2', 'mid-1',   2, 3, 0.80, true),
       ('w_top',   'p3', 'top-1',   5, 5, 0.85, true);
INSERT INTO routing.agents (id, tenant_id, name, status, per_call_cap_usd, daily_cap_usd) VALUES
    ('00000000-0000-4000-8000-00000000d001', '00000000-0000-4000-8000-00000000d000', 'main',      'active',    NULL,   NULL),
    ('00000000-0000-4000-8000-00000000d002', '00000000-0000-4000-8000-00000000d000', 'single',    'active',    0.0021, NULL),
    ('00000000-0000-4000-8000-00000000d003', '00000000-0000-4000-8000-00000000d000', 'suspended', 'suspended', NULL,   NULL),
    ('00000000-0000-4000-8000-00000000d004', '00000000-0000-4000-8000-00000000d000', 'cap_a',     'active',    NULL,   0.0025),
    ('00000000-0000-4000-8000-00000000d005', '00000000-0000-4000-8000-00000000d000', 'cap_b',     'active',    NULL,   0.0025);
\set main '''00000000-0000-4000-8000-00000000d001'''
\set single '''00000000-0000-4000-8000-00000000d002'''
\set suspended '''00000000-0000-4000-8000-00000000d003'''
\set cap_a '''00000000-0000-4000-8000-00000000d004'''
\set cap_b '''00000000-0000-4000-8000-00000000d005'''

----------------------------------------------------------------------------- structure

SELECT has_function('routing', 'insert_decision', ARRAY['text', 'uuid', 'text', 'integer', 'integer', 'jsonb', 'boolean'],
    'routing.insert_decision(text, uuid, text, int, int, jsonb, boolean) exists');
SELECT has_function('routing', 'complete_decision', ARRAY['bigint', 'jsonb', 'integer', 'integer', 'integer', 'text', 'jsonb'],
    'routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb) exists');
SELECT has_function('routing', 'fail_inference', ARRAY['bigint', 'text', 'text', 'integer', 'integer', 'integer', 'text', 'jsonb'],
    'routing.fail_inference(bigint, text, text, int, int, int, text, jsonb) exists');
SELECT is(pg_get_function_arguments('routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)'::regprocedure),
    'p_request_id text, p_agent_id uuid, p_task_type text, p_input_tokens integer, p_max_tokens integer, p_request_payload jsonb DEFAULT ''{}''::jsonb, p_streamed boolean DEFAULT false',
    'insert_decision: the contract''s argument names and default');
SELECT is(pg_get_function_arguments('routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb)'::regprocedure),
    'p_inference_id bigint, p_response_payload jsonb, p_input_tokens integer, p_output_tokens integer, p_latency_ms integer, p_usage_source text DEFAULT ''provider''::text, p_usage jsonb DEFAULT NULL::jsonb',
    'complete_decision: the contract''s argument names');
SELECT is(pg_get_function_arguments('routing.fail_inference(bigint, text, text, int, int, int, text, jsonb)'::regprocedure),
    'p_inference_id bigint, p_error_code text, p_error_message text, p_http_status integer DEFAULT NULL::integer, p_retry_after_ms integer DEFAULT NULL::integer, p_output_tokens integer DEFAULT NULL::integer, p_usage_source text DEFAULT NULL::text, p_usage jsonb DEFAULT NULL::jsonb',
    'fail_inference: the contract''s argument names and defaults');
SELECT is(pg_get_function_result('routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)'::regprocedure),
    'TABLE(outcome_id bigint, inference_id bigint, decision_rule text, model_slug text, provider text, provider_model text, outcome_status text, not_before timestamp with time zone)',
    'insert_decision returns the contract''s columns (v0.2: not_before is the eighth)');
SELECT is(pg_get_function_result('routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb)'::regprocedure),
    'TABLE(outcome_id bigint, outcome_status text, cost_actual_usd numeric)',
    'complete_decision returns the contract''s columns');
SELECT is(pg_get_function_result('routing.fail_inference(bigint, text, text, int, int, int, text, jsonb)'::regprocedure),
    'TABLE(action text, outcome_id bigint, next_inference_id bigint, model_slug text, provider text, provider_model text, not_before timestamp with time zone, outcome_status text)',
    'fail_inference returns the contract''s columns');
SELECT is_definer('routing', 'insert_decision', ARRAY['text', 'uuid', 'text', 'integer', 'integer', 'jsonb', 'boolean'],
    'insert_decision is SECURITY DEFINER');
SELECT is_definer('routing', 'complete_decision', ARRAY['bigint', 'jsonb', 'integer', 'integer', 'integer', 'text', 'jsonb'],
    'complete_decision is SECURITY DEFINER');
SELECT is_definer('routing', 'fail_inference', ARRAY['bigint', 'text', 'text', 'integer', 'integer', 'integer', 'text', 'jsonb'],
    'fail_inference is SECURITY DEFINER');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace AND p.prosecdef
         AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')$$,
    'every SECURITY DEFINER function in routing pins its search_path'
);
SELECT is_empty(
    $$SELECT f FROM unnest(ARRAY['routing.choose_route(uuid, text, int, int, timestamptz, text)',
                                 'routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)',
                                 'routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb)',
                                 'routing.fail_inference(bigint, text, text, int, int, int, text, jsonb)']) f
       WHERE obj_description(f::regprocedure, 'pg_proc') IS NULL$$,
    'the four public functions carry a COMMENT saying what they guarantee'
);
SELECT results_eq(
    -- v0.2 adds stream_interrupted and cancelled (tests/pgtap/inference_streaming.sql).
    $$SELECT error_code, same_model_retries, then_action, give_up_status FROM routing.retry_policy
       WHERE error_code NOT IN ('stream_interrupted', 'cancelled') ORDER BY error_code$$,
    $$VALUES ('abandoned', 0, 'give_up', 'failed_abandoned'),
             ('auth', 0, 'failover', 'failed_provider'),
             ('bad_request', 0, 'give_up', 'failed_bad_request'),
             ('client_error', 0, 'give_up', 'failed_client'),
             ('connection_error', 0, 'failover', 'failed_provider'),
             ('rate_limited', 2, 'failover', 'failed_rate_limited'),
             ('server_error', 0, 'failover', 'failed_provider'),
             ('timeout', 0, 'failover', 'failed_timeout')$$,
    'retry_policy is seeded with the contract''s defaults'
);

------------------------------------------------------ insert_decision: the atomic link

CREATE TEMP TABLE call1 AS
SELECT * FROM routing.insert_decision('req-1', :main, 'general', 1000, 500, '{"messages": 1}');
SELECT outcome_id AS o1, inference_id AS i1 FROM call1 \gset

SELECT results_eq(
    $$SELECT decision_rule, model_slug, provider, provider_model, outcome_status,
             outcome_id IS NOT NULL, inference_id IS NOT NULL FROM call1$$,
    $$VALUES ('cheapest_clearing_floor', 'w_cheap', 'p1', 'cheap-1', NULL::text, true, true)$$,
    'insert_decision dispatches to the cheapest model clearing the floor and returns what the client needs'
);
SELECT results_eq(
    format($$SELECT inference_id, attempts, outcome_status, completed_at IS NULL, decision_rule,
                    chosen_model_slug, projected_cost_usd, min_quality, tenant_id, task_type, request_id
               FROM routing.routing_outcomes WHERE id = %s$$, :o1),
    format($$VALUES (%s::bigint, 1, NULL::text, true, 'cheapest_clearing_floor', 'w_cheap', 0.002,
                     0.68, '00000000-0000-4000-8000-00000000d000'::uuid, 'general', 'req-1')$$, :i1),
    'the outcome is in flight, names its first attempt, attempts = 1, carries the projection, floor and tenant'
);
SELECT results_eq(
    format($$SELECT outcome_id, attempt_no, status, model_slug, agent_id, request_payload,
                    input_tokens, completed_at IS NULL
               FROM routing.inferences WHERE id = %s$$, :i1),
    format($$VALUES (%s::bigint, 1, 'routed', 'w_cheap', '00000000-0000-4000-8000-00000000d001'::uuid,
                     '{"messages": 1}'::jsonb, 1000, true)$$, :o1),
    'the first attempt is routed and points back at its outcome'
);
SELECT is(
    (SELECT count(*)::int FROM routing.inferences WHERE outcome_id = :o1), 1,
    'exactly one attempt was written'
);
SELECT is(
    -- route_snapshots: the outcome stores the compact form; explain_outcome rebuilds it.
    routing.explain_outcome(:o1),
    routing.choose_route(:main, 'general', 1000, 500),
    'the outcome''s explanation is choose_route''s document (same transaction, same now())'
);

--------------------------------------------------------- insert_decision: idempotency

SELECT pg_temp.fingerprint() AS fp_before_repeat \gset
SELECT results_eq(
    $$SELECT * FROM routing.insert_decision('req-1', '00000000-0000-4000-8000-00000000d001', 'general', 1000, 500, '{"messages": 1}')$$,
    $$SELECT * FROM call1$$,
    'the same (agent_id, request_id) returns the same row'
);
SELECT results_eq(
    $$SELECT * FROM routing.insert_decision('req-1', '00000000-0000-4000-8000-00000000d001', 'code', 5, 5)$$,
    $$SELECT * FROM call1$$,
    'a repeat with other arguments still returns the decision already taken'
);
SELECT is(pg_temp.fingerprint(), :'fp_before_repeat'::text, 'the repeats wrote nothing');
SELECT isnt(
    (SELECT outcome_id FROM routing.insert_decision('req-1', :single, 'general', 1000, 500)),
    :o1::bigint,
    'the same request_id from another agent is another request'
);

------------------------------------------------------------------- insert_decision: rejected

CREATE TEMP TABLE call_rejected AS
SELECT * FROM routing.insert_decision('req-rej', :main, 'reasoning', 1000, 500);
SELECT results_eq(
    $$SELECT inference_id, decision_rule, model_slug, outcome_status FROM call_rejected$$,
    $$VALUES (NULL::bigint, 'no_candidate_clears_floor', NULL::text, 'rejected')$$,
    'no candidate: the outcome is written rejected with the no-candidate rule and no inference'
);
SELECT results_eq(
    $$SELECT o.completed_at IS NOT NULL, o.attempts, o.inference_id, o.chosen_model_slug,
             (SELECT count(*) FROM routing.inferences i WHERE i.outcome_id = o.id)
        FROM routing.routing_outcomes o WHERE o.id = (SELECT outcome_id FROM call_rejected)$$,
    $$VALUES (true, 0, NULL::bigint, NULL::text, 0::bigint)$$,
    'a rejected outcome is terminal (completed_at), has 0 attempts and no inference row'
);

---------------------------------------------------------- insert_decision: pre-dispatch

CREATE TEMP TABLE call_suspended AS
SELECT * FROM routing.insert_decision('req-susp', :suspended, 'general', 1000, 500);
SELECT results_eq(
    $$SELECT inference_id, decision_rule, outcome_status FROM call_suspended$$,
    $$VALUES (NULL::bigint, 'failed_pre_dispatch', 'failed_pre_dispatch')$$,
    'a suspended agent is refused before dispatch: failed_pre_dispatch, no inference'
);
SELECT results_eq(
    $$SELECT o.completed_at IS NOT NULL, (SELECT count(*) FROM routing.inferences i WHERE i.outcome_id = o.id)
        FROM routing.routing_outcomes o WHERE o.id = (SELECT outcome_id FROM call_suspended)$$,
    $$VALUES (true, 0::bigint)$$,
    'the refusal is terminal and wrote no inference'
);

-- Daily cap 0.0025; each request projects 0.002.
SELECT outcome_id AS ca1_o, inference_id AS ca1_i FROM routing.insert_decision('cap-a-1', :cap_a, 'general', 1000, 500) \gset
SELECT ok(:'ca1_i'::text <> '', 'cap_a: first request is dispatched (0 + 0.002 <= 0.0025)');
-- Settles at 100 x 1 / 1e6 + 100 x 2 / 1e6 = 0.0003, below its projection.
SELECT outcome_status AS ca1_status FROM routing.complete_decision(:ca1_i, '{}', 100, 100, 10) \gset
SELECT inference_id AS ca2_i, decision_rule AS ca2_rule FROM routing.insert_decision('cap-a-2', :cap_a, 'general', 1000, 500) \gset
SELECT is(:'ca2_rule'::text, 'cheapest_clearing_floor',
    'a finished request counts at its actual cost (0.0003 + 0.002 <= 0.0025), not its projection');
CREATE TEMP TABLE call_cap_a_3 AS
SELECT * FROM routing.insert_decision('cap-a-3', :cap_a, 'general', 1000, 500);
SELECT results_eq(
    $$SELECT decision_rule, outcome_status, inference_id FROM call_cap_a_3$$,
    $$VALUES ('failed_pre_dispatch', 'failed_pre_dispatch', NULL::bigint)$$,
    'a request in flight counts at its projection: 0.0003 + 0.002 + 0.002 > 0.0025 is refused'
);
-- cap-a-2 gives up without a cost; then only the settled 0.0003 is left today.
SELECT action AS ca2_action FROM routing.fail_inference(:ca2_i, 'bad_request', '400 Bad Request', 400) \gset
SELECT is(
    (SELECT decision_rule FROM routing.insert_decision('cap-a-4', :cap_a, 'general', 1000, 500)),
    'cheapest_clearing_floor',
    'failed and refused requests carry no cost: the next request fits again'
);
SELECT outcome_id AS cb0_o, inference_id AS cb0_i FROM routing.insert_decision('cap-b-0', :cap_b, 'general', 1000, 500) \gset
-- Settles at 1000 x 1 / 1e6 + 1000 x 2 / 1e6 = 0.003.
SELECT cost_actual_usd AS cb0_cost FROM routing.complete_decision(:cb0_i, '{}', 1000, 1000, 10) \gset
SELECT is(
    (SELECT decision_rule FROM routing.insert_decision('cap-b-1', :cap_b, 'general', 1000, 500)),
    'failed_pre_dispatch',
    'cap_b: today''s settled 0.003 leaves no room'
);
UPDATE routing.routing_outcomes SET created_at = now() - interval '1 day'
 WHERE agent_id = :cap_b;
SELECT is(
    (SELECT decision_rule FROM routing.insert_decision('cap-b-2', :cap_b, 'general', 1000, 500)),
    'cheapest_clearing_floor',
    'the same spend dated yesterday does not count against today''s cap'
);

------------------------------------------------------------------- complete_decision

CREATE TEMP TABLE complete1 AS
SELECT * FROM routing.complete_decision(:i1, '{"text": "hi"}', 1200, 300, 850);
-- 1200 x 1 / 1e6 + 300 x 2 / 1e6 = 0.0018
SELECT results_eq(
    $$SELECT * FROM complete1$$,
    format($$VALUES (%s::bigint, 'succeeded', 0.0018)$$, :o1),
    'complete_decision returns the outcome, succeeded, and the cost from catalog prices'
);
SELECT results_eq(
    format($$SELECT status, input_tokens, output_tokens, cost_usd, latency_ms, response_payload,
                    completed_at IS NOT NULL, error_code
               FROM routing.inferences WHERE id = %s$$, :i1),
    $$VALUES ('succeeded', 1200, 300, 0.0018, 850, '{"text": "hi"}'::jsonb, true, NULL::text)$$,
    'the attempt is succeeded with tokens, cost, latency, response and completed_at'
);
SELECT results_eq(
    format($$SELECT o.outcome_status, o.cost_actual_usd, o.observed_latency_ms, o.judge_status,
                    o.inference_id, o.completed_at = i.completed_at
               FROM routing.routing_outcomes o JOIN routing.inferences i ON i.id = o.inference_id
              WHERE o.id = %s$$, :o1),
    format($$VALUES ('succeeded', 0.0018, 850, 'unlabeled', %s::bigint, true)$$, :i1),
    'the outcome is succeeded, judgeable (unlabeled), linked, stamped at the attempt''s completion'
);
SELECT pg_temp.fingerprint() AS fp_before_complete_repeat \gset
SELECT results_eq(
    format($$SELECT * FROM routing.complete_decision(%s, '{"text": "hi"}', 1200, 300, 850)$$, :i1),
    $$SELECT * FROM complete1$$,
    'repeating complete_decision returns the same row'
);
SELECT is(pg_temp.fingerprint(), :'fp_before_complete_repeat'::text, 'the repeat wrote nothing');

------------------------------------ fail_inference: 429, 429, 429, failover, success

DELETE FROM routing.model_cooldowns;
SELECT outcome_id AS ro, inference_id AS r1 FROM routing.insert_decision('rl-1', :main, 'general', 1000, 500) \gset

CREATE TEMP TABLE fail1 AS
SELECT * FROM routing.fail_inference(:r1, 'rate_limited', '429 Too Many Requests', 429, 2000);
SELECT next_inference_id AS r2 FROM fail1 \gset
SELECT results_eq(
    $$SELECT action, model_slug, provider, provider_model, outcome_status, next_inference_id IS NOT NULL FROM fail1$$,
    $$VALUES ('retry', 'w_cheap', 'p1', 'cheap-1', NULL::text, true)$$,
    'first 429: retry on the same model'
);
SELECT results_eq(
    format($$SELECT status, error_code, error_message, http_status, retry_after_ms, completed_at IS NOT NULL
               FROM routing.inferences WHERE id = %s$$, :r1),
    $$VALUES ('failed', 'rate_limited', '429 Too Many Requests', 429, 2000, true)$$,
    'the 429 attempt is failed with its code, message, HTTP status, Retry-After and completed_at'
);
SELECT ok(
    (SELECT f.not_before >= i.completed_at + interval '2000 milliseconds'
       FROM fail1 f, routing.inferences i WHERE i.id = :r1),
    'the retry''s not_before is no earlier than completed_at + Retry-After (2 s)'
);
SELECT results_eq(
    format($$SELECT n.outcome_id, n.attempt_no, n.status, n.model_slug, n.not_before = f.not_before,
                    o.inference_id = n.id, o.attempts, o.outcome_status
               FROM routing.inferences n, fail1 f, routing.routing_outcomes o
              WHERE n.id = %s AND o.id = n.outcome_id$$, :r2),
    format($$VALUES (%s::bigint, 2, 'routed', 'w_cheap', true, true, 2, NULL::text)$$, :ro),
    'attempt 2 is routed on the same model, scheduled at not_before; the outcome points at it (attempts = 2)'
);
SELECT ok(
    (SELECT c.cooling_until >= i.completed_at + interval '2000 milliseconds'
       FROM routing.model_cooldowns c, routing.inferences i
      WHERE c.model_slug = 'w_cheap' AND i.id = :r1),
    'the 429 put w_cheap into the shared cooldown for at least its Retry-After'
);
SELECT is(
    (SELECT model_slug FROM routing.insert_decision('rl-other', :main, 'general', 1000, 500)),
    'w_mid',
    'the shared cooldown is honoured by the next decision of any request'
);
-- The same failure reported twice (a client retrying its own call) changes nothing.
SELECT pg_temp.fingerprint() AS fp_before_fail_repeat \gset
SELECT results_eq(
    format($$SELECT * FROM routing.fail_inference(%s, 'rate_limited', '429 Too Many Requests', 429, 2000)$$, :r1),
    $$SELECT * FROM fail1$$,
    'repeating fail_inference with the same error_code returns the earlier decision'
);
SELECT is(pg_temp.fingerprint(), :'fp_before_fail_repeat'::text,
    'the repeat wrote nothing (no new attempt, no cooldown change)');
-- Regression: the HINT of this RAISE once had a CASE without ELSE, so every earlier
-- error_code but 'abandoned' made it raise 22004 "RAISE statement option cannot be null".
SELECT throws_ok(
    format($$SELECT * FROM routing.fail_inference(%s, 'server_error', '502', 502)$$, :r1),
    '55000', NULL,
    'fail_inference on an attempt already failed with another error_code: 55000'
);

CREATE TEMP TABLE fail2 AS
SELECT * FROM routing.fail_inference(:r2, 'rate_limited', '429 again, no Retry-After', 429, NULL);
SELECT next_inference_id AS r3 FROM fail2 \gset
SELECT results_eq(
    $$SELECT action, model_slug FROM fail2$$,
    $$VALUES ('retry', 'w_cheap')$$,
    'second 429: retry on the same model again'
);
SELECT ok(
    (SELECT f.not_before > i.completed_at FROM fail2 f, routing.inferences i WHERE i.id = :r2),
    'without Retry-After the retry still backs off (not_before later than the failure)'
);
SELECT ok(
    (SELECT c.cooling_until >= i.completed_at + make_interval(secs => s.rate_limit_cooldown_ms / 1000.0)
       FROM routing.model_cooldowns c, routing.inferences i, routing.settings s
      WHERE c.model_slug = 'w_cheap' AND i.id = :r2),
    'a 429 without Retry-After cools the model for settings.rate_limit_cooldown_ms'
);

CREATE TEMP TABLE fail3 AS
SELECT * FROM routing.fail_inference(:r3, 'rate_limited', '429 a third time', 429, 1000);
SELECT next_inference_id AS r4 FROM fail3 \gset
SELECT results_eq(
    $$SELECT action, model_slug, provider, provider_model, outcome_status FROM fail3$$,
    $$VALUES ('failover', 'w_mid', 'p2', 'mid-1', NULL::text)$$,
    'third 429: same-model retries exhausted, fail over to the next survivor'
);
SELECT results_eq(
    format($$SELECT attempt_no, model_slug, status, error_code, completed_at IS NOT NULL
               FROM routing.inferences WHERE outcome_id = %s ORDER BY attempt_no$$, :ro),
    $$VALUES (1, 'w_cheap', 'failed', 'rate_limited', true),
             (2, 'w_cheap', 'failed', 'rate_limited', true),
             (3, 'w_cheap', 'failed', 'rate_limited', true),
             (4, 'w_mid', 'routed', NULL::text, false)$$,
    'three failed attempts on w_cheap, one routed on w_mid'
);
SELECT results_eq(
    format($$SELECT inference_id, attempts, outcome_status FROM routing.routing_outcomes WHERE id = %s$$, :ro),
    format($$VALUES (%s::bigint, 4, NULL::text)$$, :r4),
    'the outcome points at attempt 4 and is still in flight'
);
SELECT results_eq(
    format($$SELECT outcome_status FROM routing.complete_decision(%s, '{}', 1000, 200, 900)$$, :r4),
    $$VALUES ('succeeded')$$,
    'the failover attempt succeeds'
);
SELECT results_eq(
    format($$SELECT o.outcome_status, o.inference_id, o.cost_actual_usd,
                    (SELECT count(*) FROM routing.inferences i WHERE i.outcome_id = o.id AND i.status = 'routed')
               FROM routing.routing_outcomes o WHERE o.id = %s$$, :ro),
    format($$VALUES ('succeeded', %s::bigint, 0.0026, 0::bigint)$$, :r4),
    'the outcome ends succeeded on the succeeding attempt (cost at w_mid''s prices), nothing left routed'
);

---------------------------------------- fail_inference: failover codes and give_up

DELETE FROM routing.model_cooldowns;
SELECT outcome_id AS so, inference_id AS s1 FROM routing.insert_decision('se-1', :main, 'general', 1000, 500) \gset
SELECT next_inference_id AS s2, action AS s1_action, model_slug AS s1_next
  FROM routing.fail_inference(:s1, 'server_error', '502 Bad Gateway', 502) \gset
SELECT is(:'s1_action'::text || ' ' || :'s1_next', 'failover w_mid', 'server_error: fail over at once (w_cheap -> w_mid)');
SELECT next_inference_id AS s3, action AS s2_action, model_slug AS s2_next
  FROM routing.fail_inference(:s2, 'timeout', 'read timed out after 30 s') \gset
SELECT is(:'s2_action'::text || ' ' || :'s2_next', 'failover w_top', 'timeout: fail over at once (w_mid -> w_top)');
CREATE TEMP TABLE give_up1 AS
SELECT * FROM routing.fail_inference(:s3, 'connection_error', 'connection reset by peer');
SELECT results_eq(
    $$SELECT action, next_inference_id, model_slug, not_before, outcome_status FROM give_up1$$,
    $$VALUES ('give_up', NULL::bigint, NULL::text, NULL::timestamptz, 'failed_provider')$$,
    'connection_error with no survivor left: give_up, failed_provider'
);
SELECT results_eq(
    format($$SELECT o.outcome_status, o.inference_id, o.attempts, o.completed_at IS NOT NULL,
                    (SELECT count(*) FROM routing.inferences i WHERE i.outcome_id = o.id AND i.status = 'routed')
               FROM routing.routing_outcomes o WHERE o.id = %s$$, :so),
    format($$VALUES ('failed_provider', %s::bigint, 3, true, 0::bigint)$$, :s3),
    'the given-up outcome is terminal, linked to its last attempt, with nothing left routed'
);
SELECT pg_temp.fingerprint() AS fp_before_giveup_repeat \gset
SELECT results_eq(
    format($$SELECT * FROM routing.fail_inference(%s, 'connection_error', 'connection reset by peer')$$, :s3),
    $$SELECT * FROM give_up1$$,
    'repeating the failure that gave up returns the same give_up'
);
SELECT is(pg_temp.fingerprint(), :'fp_before_giveup_repeat'::text, 'and writes nothing');

SELECT inference_id AS a1 FROM routing.insert_decision('auth-1', :main, 'general', 1000, 500) \gset
SELECT results_eq(
    format($$SELECT action, model_slug FROM routing.fail_inference(%s, 'auth', '401 Unauthorized', 401)$$, :a1),
    $$VALUES ('failover', 'w_mid')$$,
    'auth: fail over at once'
);

-- Agent "single" has one candidate, so every failover code gives up at once with its status.
SELECT inference_id AS t1 FROM routing.insert_decision('single-timeout', :single, 'general', 1000, 500) \gset
SELECT results_eq(
    format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'timeout', 'timed out')$$, :t1),
    $$VALUES ('give_up', 'failed_timeout')$$,
    'timeout with no survivor: give_up, failed_timeout'
);
SELECT inference_id AS t2 FROM routing.insert_decision('single-5xx', :single, 'general', 1000, 500) \gset
SELECT results_eq(
    format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'server_error', '503', 503)$$, :t2),
    $$VALUES ('give_up', 'failed_provider')$$,
    'server_error with no survivor: give_up, failed_provider'
);
SELECT inference_id AS t3 FROM routing.insert_decision('single-auth', :single, 'general', 1000, 500) \gset
SELECT results_eq(
    format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'auth', '403', 403)$$, :t3),
    $$VALUES ('give_up', 'failed_provider')$$,
    'auth with no survivor: give_up, failed_provider'
);
DELETE FROM routing.model_cooldowns;
SELECT outcome_id AS qo, inference_id AS q1 FROM routing.insert_decision('single-429', :single, 'general', 1000, 500) \gset
CREATE TEMP TABLE steps (n int, action text, model_slug text, outcome_status text, next_inference_id bigint);
INSERT INTO steps SELECT 1, f.action, f.model_slug, f.outcome_status, f.next_inference_id
  FROM routing.fail_inference(:q1, 'rate_limited', '429', 429) f;
SELECT next_inference_id AS q2 FROM steps WHERE n = 1 \gset
INSERT INTO steps SELECT 2, f.action, f.model_slug, f.outcome_status, f.next_inference_id
  FROM routing.fail_inference(:q2, 'rate_limited', '429', 429) f;
SELECT next_inference_id AS q3 FROM steps WHERE n = 2 \gset
INSERT INTO steps SELECT 3, f.action, f.model_slug, f.outcome_status, f.next_inference_id
  FROM routing.fail_inference(:q3, 'rate_limited', '429', 429) f;
SELECT results_eq(
    $$SELECT action, model_slug, outcome_status FROM steps ORDER BY n$$,
    $$VALUES ('retry', 'w_cheap', NULL::text), ('retry', 'w_cheap', NULL::text),
             ('give_up', NULL::text, 'failed_rate_limited')$$,
    'rate_limited with no survivor: retry, retry, then give_up with failed_rate_limited'
);
SELECT results_eq(
    format($$SELECT o.inference_id = %s, o.attempts FROM routing.routing_outcomes o WHERE o.id = %s$$, :q3, :qo),
    $$VALUES (true, 3)$$,
    'the outcome stays linked to its third (last) attempt'
);

-- bad_request and client_error give up even with survivors left.
DELETE FROM routing.model_cooldowns;
SELECT outcome_id AS bo, inference_id AS b1 FROM routing.insert_decision('bad-1', :main, 'general', 1000, 500) \gset
SELECT results_eq(
    format($$SELECT action, next_inference_id, outcome_status FROM routing.fail_inference(%s, 'bad_request', '400 Bad Request', 400)$$, :b1),
    $$VALUES ('give_up', NULL::bigint, 'failed_bad_request')$$,
    'bad_request: give_up with failed_bad_request, although w_mid and w_top were left'
);
SELECT results_eq(
    format($$SELECT outcome_status, inference_id FROM routing.routing_outcomes WHERE id = %s$$, :bo),
    format($$VALUES ('failed_bad_request', %s::bigint)$$, :b1),
    'the outcome is failed_bad_request and linked to the attempt'
);
SELECT inference_id AS c1 FROM routing.insert_decision('client-1', :main, 'general', 1000, 500) \gset
SELECT results_eq(
    format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'client_error', 'KeyboardInterrupt')$$, :c1),
    $$VALUES ('give_up', 'failed_client')$$,
    'client_error: give_up with failed_client'
);

-- The attempt cap (settings.max_attempts) wins over the policy.
UPDATE routing.settings SET max_attempts = 2;
DELETE FROM routing.model_cooldowns;
SELECT inference_id AS m1 FROM routing.insert_decision('cap-attempts', :main, 'general', 1000, 500) \gset
SELECT next_inference_id AS m2, action AS m1_action FROM routing.fail_inference(:m1, 'rate_limited', '429', 429) \gset
SELECT is(:'m1_action'::text, 'retry', 'max_attempts = 2: attempt 1 still retries');
SELECT results_eq(
    format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'server_error', '500', 500)$$, :m2),
    $$VALUES ('give_up', 'failed_provider')$$,
    'max_attempts = 2: attempt 2 gives up although the policy and the survivors would fail over'
);
UPDATE routing.settings SET max_attempts = 6;

------------------------------------------------------------- illegal transitions

SELECT pg_temp.fingerprint() AS fp_before_55000 \gset
SELECT throws_ok(
    format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, 1, 1)$$, :r1),
    '55000', NULL,
    'completing a failed attempt: 55000'
);
SELECT throws_ok(
    format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'late timeout')$$, :i1),
    '55000', NULL,
    'failing a succeeded attempt: 55000'
);
SELECT is(pg_temp.fingerprint(), :'fp_before_55000'::text, 'the refused transitions wrote nothing');

------------------------------------------------- bad arguments (22023), unknown ids (P0002)

SELECT pg_temp.fingerprint() AS fp_before_errors \gset

SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision(NULL, '00000000-0000-4000-8000-00000000d001', 'general', 1, 1)$$),
    '22023: %p_request_id%', 'insert_decision: NULL p_request_id is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('', '00000000-0000-4000-8000-00000000d001', 'general', 1, 1)$$),
    '22023: %p_request_id%', 'insert_decision: empty p_request_id is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('   ', '00000000-0000-4000-8000-00000000d001', 'general', 1, 1)$$),
    '22023: %p_request_id%', 'insert_decision: blank p_request_id is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('x', NULL, 'general', 1, 1)$$),
    '22023: %p_agent_id%', 'insert_decision: NULL p_agent_id is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('x', '00000000-0000-4000-8000-00000000d001', NULL, 1, 1)$$),
    '22023: %p_task_type%', 'insert_decision: NULL p_task_type is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('x', '00000000-0000-4000-8000-00000000d001', 'general', -1, 1)$$),
    '22023: %p_input_tokens%', 'insert_decision: negative p_input_tokens is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('x', '00000000-0000-4000-8000-00000000d001', 'general', 1, -1)$$),
    '22023: %p_max_tokens%', 'insert_decision: negative p_max_tokens is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('x', '00000000-0000-4000-8000-00000000d001', 'general', 1, NULL)$$),
    '22023: %p_max_tokens%', 'insert_decision: NULL p_max_tokens is 22023 naming it');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('req-1', '00000000-0000-4000-8000-00000000d001', 'general', -1, 500)$$),
    '22023: %p_input_tokens%', 'insert_decision: a bad argument is 22023 even for an existing request (arguments before state)');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.insert_decision('x', '00000000-0000-4000-8000-0000000dead0', 'general', 1, 1)$$),
    'P0002: %00000000-0000-4000-8000-0000000dead0%', 'insert_decision: unknown agent is P0002 naming it');

SELECT alike(pg_temp.error_of($$SELECT * FROM routing.complete_decision(NULL, '{}', 1, 1, 1)$$),
    '22023: %p_inference_id%', 'complete_decision: NULL p_inference_id is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', -1, 1, 1)$$, :i1)),
    '22023: %p_input_tokens%', 'complete_decision: negative p_input_tokens is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, -1, 1)$$, :i1)),
    '22023: %p_output_tokens%', 'complete_decision: negative p_output_tokens is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, 1, -1)$$, :i1)),
    '22023: %p_latency_ms%', 'complete_decision: negative p_latency_ms is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', -1, 1, 1)$$, :r1)),
    '22023: %p_input_tokens%', 'complete_decision: a bad argument on a failed attempt is 22023, not 55000');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.complete_decision(987654321, '{}', 1, 1, 1)$$),
    'P0002: %987654321%', 'complete_decision: unknown inference is P0002 naming it');

SELECT alike(pg_temp.error_of($$SELECT * FROM routing.fail_inference(NULL, 'timeout', 'x')$$),
    '22023: %p_inference_id%', 'fail_inference: NULL p_inference_id is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, NULL, 'x')$$, :a1)),
    '22023: %p_error_code%', 'fail_inference: NULL p_error_code is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'teapot', 'x', 418)$$, :a1)),
    '22023: %p_error_code%', 'fail_inference: unknown p_error_code is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'abandoned', 'x')$$, :a1)),
    '22023: %p_error_code%', 'fail_inference: abandoned (the reaper''s code) from a client is 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', NULL)$$, :a1)),
    '22023: %p_error_message%', 'fail_inference: NULL p_error_message is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', '')$$, :a1)),
    '22023: %p_error_message%', 'fail_inference: empty p_error_message is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', 'x', 99)$$, :a1)),
    '22023: %p_http_status%', 'fail_inference: p_http_status 99 is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', 'x', 600)$$, :a1)),
    '22023: %p_http_status%', 'fail_inference: p_http_status 600 is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'rate_limited', 'x', 429, -1)$$, :a1)),
    '22023: %p_retry_after_ms%', 'fail_inference: negative p_retry_after_ms is 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'teapot', 'x')$$, :r1)),
    '22023: %p_error_code%', 'fail_inference: a bad argument on an already failed attempt is 22023, not 55000');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'x', 99)$$, :i1)),
    '22023: %p_http_status%', 'fail_inference: a bad argument on a succeeded attempt is 22023, not 55000');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.fail_inference(987654321, 'timeout', 'x')$$),
    'P0002: %987654321%', 'fail_inference: unknown inference is P0002 naming it');

SELECT is(pg_temp.fingerprint(), :'fp_before_errors'::text, 'none of the refused calls wrote anything');

------------------------------------------------------------------------------- grants

SELECT results_eq(
    $$SELECT p.proname::text COLLATE "default"
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace
         AND has_function_privilege('routing_app', p.oid, 'EXECUTE')
       ORDER BY 1$$,
    -- v0.2: the contract adds mark_first_token and heartbeat_inference.
    $$VALUES ('choose_route'), ('complete_decision'), ('fail_inference'), ('heartbeat_inference'),
             ('insert_decision'), ('mark_first_token')$$,
    'routing_app may execute choose_route, insert_decision, complete_decision, fail_inference, mark_first_token, heartbeat_inference and nothing else in routing'
);
SELECT function_privs_are('routing', 'insert_decision', ARRAY['text', 'uuid', 'text', 'integer', 'integer', 'jsonb', 'boolean'],
    'routing_app', ARRAY['EXECUTE'], 'routing_app may execute insert_decision');
SELECT function_privs_are('routing', 'complete_decision', ARRAY['bigint', 'jsonb', 'integer', 'integer', 'integer', 'text', 'jsonb'],
    'routing_app', ARRAY['EXECUTE'], 'routing_app may execute complete_decision');
SELECT function_privs_are('routing', 'fail_inference', ARRAY['bigint', 'text', 'text', 'integer', 'integer', 'integer', 'text', 'jsonb'],
    'routing_app', ARRAY['EXECUTE'], 'routing_app may execute fail_inference');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace
         AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
    'PUBLIC may execute no function in routing'
);

SET LOCAL ROLE routing_app;
SELECT throws_ok($$SELECT * FROM routing.routing_outcomes$$, '42501', NULL,
    'routing_app cannot SELECT routing_outcomes');
SELECT throws_ok($$SELECT * FROM routing.inferences$$, '42501', NULL,
    'routing_app cannot SELECT inferences');
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status, completed_at)
      VALUES ('direct', '00000000-0000-4000-8000-00000000d001', 'general', 'no_candidate_enrolled', 'rejected', now())$$,
    '42501', NULL, 'routing_app cannot INSERT into routing_outcomes');
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug) VALUES ('00000000-0000-4000-8000-00000000d001', 'w_cheap')$$,
    '42501', NULL, 'routing_app cannot INSERT into inferences');
SELECT throws_ok($$UPDATE routing.routing_outcomes SET judge_status = NULL$$, '42501', NULL,
    'routing_app cannot UPDATE routing_outcomes');
SELECT throws_ok($$UPDATE routing.inferences SET latency_ms = 1$$, '42501', NULL,
    'routing_app cannot UPDATE inferences');
SELECT throws_ok($$DELETE FROM routing.routing_outcomes$$, '42501', NULL,
    'routing_app cannot DELETE from routing_outcomes');
SELECT throws_ok($$DELETE FROM routing.inferences$$, '42501', NULL,
    'routing_app cannot DELETE from inferences');
SELECT throws_ok($$SELECT * FROM routing.retry_policy$$, '42501', NULL,
    'routing_app cannot read retry_policy');
SELECT throws_ok(
    $$SELECT * FROM routing._decision_row('00000000-0000-4000-8000-00000000d001', 'req-1')$$,
    '42501', NULL, 'routing_app cannot execute the private helper _decision_row');
SELECT throws_ok(
    $$SELECT routing._explain_route(NULL, 'general', 1, 1, now(), 'document')$$,
    '42501', NULL, 'routing_app cannot execute the private helper _explain_route');
-- Through the functions, routing_app does the whole job.
SELECT lives_ok(
    $q$DO $x$
       DECLARE
           v_inference bigint;
       BEGIN
           SELECT inference_id INTO STRICT v_inference
             FROM routing.insert_decision('as-app', '00000000-0000-4000-8000-00000000d001', 'general', 1000, 500);
           SELECT next_inference_id INTO STRICT v_inference
             FROM routing.fail_inference(v_inference, 'server_error', '503', 503);
           PERFORM routing.complete_decision(v_inference, '{}', 10, 10, 10);
       END
       $x$$q$,
    'routing_app can insert_decision, fail_inference and complete_decision (SECURITY DEFINER)'
);
RESET ROLE;
SELECT is(
    (SELECT outcome_status FROM routing.routing_outcomes WHERE request_id = 'as-app'),
    'succeeded',
    'the request routing_app drove is recorded as succeeded'
);

SET LOCAL ROLE routing_readonly;
SELECT lives_ok(
    $$SELECT (SELECT count(*) FROM routing.routing_outcomes), (SELECT count(*) FROM routing.inferences),
             (SELECT count(*) FROM routing.retry_policy), (SELECT count(*) FROM routing.model_cooldowns)$$,
    'routing_readonly can SELECT the ledger, the retry policy and the cooldowns'
);
SELECT throws_ok($$UPDATE routing.routing_outcomes SET judge_status = NULL$$, '42501', NULL,
    'routing_readonly cannot UPDATE routing_outcomes');
SELECT throws_ok(
    $$SELECT * FROM routing.insert_decision('as-readonly', '00000000-0000-4000-8000-00000000d001', 'general', 1, 1)$$,
    '42501', NULL, 'routing_readonly cannot write through insert_decision either');
RESET ROLE;

------------------------------------------------ a terminal outcome, and the model's own cooldown

-- History: a terminal outcome whose attempt was left routed (the older write path).
-- fail_inference must refuse (55000), not add an attempt to a finished request.
DELETE FROM routing.model_cooldowns;
SELECT outcome_id AS term_o, inference_id AS term_i
  FROM routing.insert_decision('terminal-history', :main, 'general', 1000, 500) \gset
-- (History is loaded by the owner with the guard off, as an import would be.)
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes DISABLE TRIGGER guard_transition;
UPDATE routing.routing_outcomes SET outcome_status = 'failed_provider', completed_at = now()
 WHERE id = :term_o;
ALTER TABLE routing.routing_outcomes ENABLE TRIGGER guard_transition;
SET CONSTRAINTS ALL DEFERRED;
-- The restore switch of rollback_repair is not a bypass any session can flip.
SELECT set_config('routing.restoring_repair_run', '1', true);
SELECT throws_ok(format($$UPDATE routing.routing_outcomes SET outcome_status = 'succeeded' WHERE id = %s$$, :term_o),
    '23514', NULL, 'setting routing.restoring_repair_run by hand does not switch the guard off');
SELECT set_config('routing.restoring_repair_run', '', true);
SELECT pg_temp.fingerprint() AS fp_term \gset
SELECT throws_ok(format($$SELECT * FROM routing.fail_inference(%s, 'rate_limited', '429', 429, 100)$$, :term_i),
    '55000', NULL, 'fail_inference on an attempt whose outcome is already terminal: 55000');
SELECT is(pg_temp.fingerprint(), :'fp_term', '... and nothing was written (no new attempt, no cooldown)');

-- A 429 without Retry-After cools the model down for settings.rate_limit_cooldown_ms
-- (other requests route around it), while this request's own retry follows the policy:
-- the first backoff is base_backoff_ms with equal jitter, i.e. within [base/2, base].
SELECT outcome_id AS cd_o, inference_id AS cd_i
  FROM routing.insert_decision('own-cooldown', :main, 'general', 1000, 500) \gset
SELECT not_before AS cd_nb FROM routing.fail_inference(:cd_i, 'rate_limited', '429 without Retry-After', 429) \gset
SELECT ok(:'cd_nb'::timestamptz - (SELECT completed_at FROM routing.inferences WHERE id = :cd_i)
          BETWEEN (SELECT make_interval(secs => base_backoff_ms / 2000.0) FROM routing.retry_policy WHERE error_code = 'rate_limited')
              AND (SELECT make_interval(secs => base_backoff_ms / 1000.0) FROM routing.retry_policy WHERE error_code = 'rate_limited'),
    'without Retry-After the first retry is the policy''s backoff with jitter (base/2 .. base)');
SELECT ok((SELECT cooling_until - completed_at FROM routing.model_cooldowns c, routing.inferences i
            WHERE i.id = :cd_i AND c.model_slug = i.model_slug)
          >= (SELECT make_interval(secs => rate_limit_cooldown_ms / 1000.0) FROM routing.settings),
    'without Retry-After the cooldown is the seeded default');

SELECT * FROM finish();
ROLLBACK;
