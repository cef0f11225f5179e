-- pgTAP for the v0.2 write path (the reworked write_path change, and the streaming
-- vocabulary of inference_streaming, outcome_stream_statuses, retry_policy_stream_codes):
-- the new signatures (a v0.1 call still resolves), insert_decision's not_before and
-- p_streamed, mark_first_token, heartbeat_inference, the after-first-token give-up rule,
-- cancelled, partial cost, usage_source, and the bounds (22023 before any state).
BEGIN;
SELECT plan(87);

------------------------------------------------------------------------------ helpers

\ir helpers/error_of.sql
\ir helpers/fingerprint.sql

-- A request decided now: its first attempt's id.
CREATE FUNCTION pg_temp.decide(p_request text, p_streamed boolean DEFAULT true) RETURNS bigint
LANGUAGE sql AS $$
    SELECT inference_id FROM routing.insert_decision(
        p_request, '00000000-0000-4000-8000-00000000e001', 'general', 1000, 500, '{"stream": true}', p_streamed);
$$;

-- Prices per Mtok: s_cheap 1 in / 2 out, s_mid 2 / 3, s_top 5 / 5. general's floor 0.68.
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('s_cheap', 'p1', 'cheap-1', 1, 2, 0.80, true),
       ('s_mid',   'p2', 'mid-1',   2, 3, 0.80, true),
       ('s_top',   'p3', 'top-1',   5, 5, 0.85, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('00000000-0000-4000-8000-00000000e001', '00000000-0000-4000-8000-00000000e000', 'streamer');
\set agent '''00000000-0000-4000-8000-00000000e001'''

----------------------------------------------------------------------------- structure

SELECT has_function('routing', 'mark_first_token', ARRAY['bigint', 'integer'], 'mark_first_token(bigint, int) exists');
SELECT has_function('routing', 'heartbeat_inference', ARRAY['bigint', 'integer'], 'heartbeat_inference(bigint, int) exists');
SELECT is(pg_get_function_arguments('routing.mark_first_token(bigint, int)'::regprocedure),
    'p_inference_id bigint, p_ttft_ms integer', 'mark_first_token: the contract''s argument names');
SELECT is(pg_get_function_result('routing.mark_first_token(bigint, int)'::regprocedure),
    'TABLE(outcome_id bigint, first_token_at timestamp with time zone)', 'mark_first_token returns the contract''s columns');
SELECT is(pg_get_function_arguments('routing.heartbeat_inference(bigint, int)'::regprocedure),
    'p_inference_id bigint, p_output_tokens integer DEFAULT NULL::integer', 'heartbeat_inference: the contract''s arguments');
SELECT function_returns('routing', 'heartbeat_inference', ARRAY['bigint', 'integer'], 'boolean',
    'heartbeat_inference returns boolean');
SELECT is_definer('routing', 'mark_first_token', ARRAY['bigint', 'integer'], 'mark_first_token is SECURITY DEFINER');
SELECT is_definer('routing', 'heartbeat_inference', ARRAY['bigint', 'integer'], 'heartbeat_inference is SECURITY DEFINER');
SELECT function_privs_are('routing', 'mark_first_token', ARRAY['bigint', 'integer'], 'routing_app', ARRAY['EXECUTE'],
    'routing_app may execute mark_first_token');
SELECT function_privs_are('routing', 'heartbeat_inference', ARRAY['bigint', 'integer'], 'routing_app', ARRAY['EXECUTE'],
    'routing_app may execute heartbeat_inference');
SELECT ok(NOT has_function_privilege('public', 'routing.heartbeat_inference(bigint, int)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'routing.mark_first_token(bigint, int)', 'EXECUTE'),
    'PUBLIC may execute neither');
SELECT is_empty(
    $$SELECT f FROM unnest(ARRAY['routing.insert_decision(text, uuid, text, int, int, jsonb)',
                                 'routing.complete_decision(bigint, jsonb, int, int, int)',
                                 'routing.fail_inference(bigint, text, text, int, int)']) f
       WHERE to_regprocedure(f) IS NOT NULL$$,
    'the v0.1 signatures are gone: one function each, no ambiguous overload');
SELECT is_empty(
    $$SELECT f FROM unnest(ARRAY['routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)',
                                 'routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb)',
                                 'routing.fail_inference(bigint, text, text, int, int, int, text, jsonb)',
                                 'routing.mark_first_token(bigint, int)',
                                 'routing.heartbeat_inference(bigint, int)']) f
       WHERE obj_description(f::regprocedure, 'pg_proc') IS NULL$$,
    'every public write-path function carries a COMMENT');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_proc p
       WHERE p.oid IN ('routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)'::regprocedure,
                       'routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb)'::regprocedure,
                       'routing.fail_inference(bigint, text, text, int, int, int, text, jsonb)'::regprocedure,
                       'routing._explain_route(numeric, text, int, int, timestamptz, text, uuid, text)'::regprocedure)
         AND NOT ('jit=off' = ANY (p.proconfig))$$,
    'the write path and the router are never JIT-compiled (SET jit = off)');
SELECT results_eq(
    $$SELECT error_code, same_model_retries, then_action, give_up_status FROM routing.retry_policy
       WHERE error_code IN ('stream_interrupted', 'cancelled') ORDER BY error_code$$,
    $$VALUES ('cancelled', 0, 'give_up', 'cancelled'),
             ('stream_interrupted', 0, 'failover', 'failed_stream_interrupted')$$,
    'retry_policy: cancelled gives up, a stream broken before its first token fails over');
SELECT col_default_is('routing', 'inferences', 'streamed', 'false', 'inferences.streamed defaults to false');
SELECT col_not_null('routing', 'inferences', 'streamed', 'inferences.streamed is NOT NULL');

------------------------------------------------- insert_decision: p_streamed, not_before

SELECT pg_temp.decide('st-1') AS a1 \gset
SELECT results_eq(
    format($$SELECT streamed, not_before, input_tokens, status FROM routing.inferences WHERE id = %s$$, :a1),
    $$VALUES (true, NULL::timestamptz, 1000, 'routed')$$,
    'p_streamed => true: the first attempt is streamed, dispatched now, with the input estimate');
SELECT throws_ok(format($$UPDATE routing.inferences SET usage_source = 'guessed' WHERE id = %s$$, :a1),
    '23514', NULL, 'usage_source is provider or estimated (CHECK)');
SELECT is(
    (SELECT not_before FROM routing.insert_decision('st-1', :agent, 'general', 1000, 500)),
    NULL::timestamptz, 'a repeat of a request whose attempt is due now returns not_before NULL');
SELECT inference_id AS v01 FROM routing.insert_decision('v01-call', :agent, 'general', 1000, 500) \gset
SELECT is((SELECT streamed FROM routing.inferences WHERE id = :v01),
    false, 'a v0.1 call (five arguments) resolves to the v0.2 function; its attempt is not streamed');

-- A scheduled retry: the repeat (a gateway resuming after a crash) learns when to dispatch.
CREATE TEMP TABLE retry1 AS
SELECT * FROM routing.fail_inference(:a1, 'rate_limited', 'HTTP 429', 429, 60000);
SELECT next_inference_id AS a2, not_before AS a2_nb FROM retry1 \gset
SELECT results_eq(
    $$SELECT inference_id, not_before, outcome_status FROM routing.insert_decision('st-1', '00000000-0000-4000-8000-00000000e001', 'general', 1000, 500)$$,
    format($$VALUES (%s::bigint, %L::timestamptz, NULL::text)$$, :a2, :'a2_nb'),
    'a repeat returns the open attempt and its not_before (the retry scheduled after Retry-After)');
SELECT ok(:'a2_nb'::timestamptz >= now() + interval '59 seconds', 'the scheduled retry is at least Retry-After away');
SELECT is((SELECT streamed FROM routing.inferences WHERE id = :a2), true, 'a retry inherits streamed');
DELETE FROM routing.model_cooldowns;

-- Before the first token a broken stream fails over, and the next attempt streams too.
CREATE TEMP TABLE fo1 AS
SELECT * FROM routing.fail_inference(:a2, 'stream_interrupted', 'stream ended after 0 chunks');
SELECT next_inference_id AS a3 FROM fo1 \gset
SELECT results_eq($$SELECT action, model_slug FROM fo1$$, $$VALUES ('failover', 's_mid')$$,
    'stream_interrupted before the first token: failover (nothing reached the caller)');
SELECT is((SELECT streamed FROM routing.inferences WHERE id = :a3), true, 'a failover inherits streamed');

----------------------------------------------------------------------- mark_first_token

CREATE TEMP TABLE ft1 AS SELECT * FROM routing.mark_first_token(:a3, 420);
SELECT results_eq(
    format($$SELECT f.outcome_id, f.first_token_at, i.ttft_ms
               FROM ft1 f, routing.inferences i WHERE i.id = %s$$, :a3),
    format($$SELECT outcome_id, first_token_at, 420 FROM routing.inferences WHERE id = %s$$, :a3),
    'mark_first_token stamps first_token_at and ttft_ms and returns the outcome');
SELECT ok((SELECT first_token_at IS NOT NULL FROM ft1), 'first_token_at is set');
SELECT pg_temp.fingerprint() AS fp_ft \gset
SELECT results_eq($$SELECT * FROM routing.mark_first_token(currval('routing.inferences_id_seq'), 999)$$,
    $$SELECT * FROM ft1$$, 'a repeat returns the first stamp');
SELECT is(pg_temp.fingerprint(), :'fp_ft', 'a repeat of mark_first_token writes nothing');

-------------------------------------------------------------------- heartbeat_inference

SELECT is(routing.heartbeat_inference(:a3, 5), true, 'heartbeat on a routed attempt: true');
SELECT results_eq(format($$SELECT heartbeat_at IS NOT NULL, output_tokens FROM routing.inferences WHERE id = %s$$, :a3),
    $$VALUES (true, 5)$$, 'the heartbeat stamps heartbeat_at and the partial output count');
SELECT is(routing.heartbeat_inference(:a3), true, 'a heartbeat without a count');
SELECT is((SELECT output_tokens FROM routing.inferences WHERE id = :a3), 5, 'a heartbeat without a count keeps the last one');
SELECT is(routing.heartbeat_inference(:a3, 7), true, 'a later heartbeat');

---------------------------------------------------------- after the first token: give up

-- server_error would fail over (s_top is left), but the caller has seen output.
CREATE TEMP TABLE gu1 AS
SELECT * FROM routing.fail_inference(:a3, 'server_error', 'connection reset mid-stream', 502);
SELECT results_eq($$SELECT action, next_inference_id, outcome_status FROM gu1$$,
    $$VALUES ('give_up', NULL::bigint, 'failed_stream_interrupted')$$,
    'after the first token a server_error gives up: failed_stream_interrupted, no failover');
-- s_mid: 1000 input * 2 / 1e6 + 7 output (the last heartbeat's) * 3 / 1e6 = 0.002021
SELECT results_eq(
    format($$SELECT status, output_tokens, usage_source, cost_usd FROM routing.inferences WHERE id = %s$$, :a3),
    $$VALUES ('failed', 7, 'estimated', 0.002021)$$,
    'the attempt keeps its partial output (the last heartbeat''s) and costs input + partial output, estimated');
SELECT results_eq(
    format($$SELECT outcome_status, cost_actual_usd, judge_status, inference_id, completed_at IS NOT NULL
               FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM gu1)$$),
    format($$VALUES ('failed_stream_interrupted', 0.002021, NULL::text, %s::bigint, true)$$, :a3),
    'the outcome ends on that attempt with its partial cost, and is never judged');
SELECT is((SELECT count(*)::int FROM routing.inferences WHERE outcome_id = (SELECT outcome_id FROM gu1)), 3,
    'no fourth attempt was written');
SELECT is(routing.heartbeat_inference(:a3, 9), false, 'heartbeat on a closed attempt: false (stop)');
SELECT is((SELECT output_tokens FROM routing.inferences WHERE id = :a3), 7, 'a late heartbeat writes nothing');
SELECT results_eq(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', 'again', 502)$$, :a3),
    $$SELECT * FROM gu1$$, 'repeating the failure returns the same give_up');
SELECT results_eq(format($$SELECT * FROM routing.mark_first_token(%s, 1)$$, :a3),
    $$SELECT * FROM ft1$$, 'mark_first_token on the closed attempt still returns its first stamp');

-- p_output_tokens wins over the heartbeat; the provider's own count keeps its source.
SELECT pg_temp.decide('st-2') AS b1 \gset
SELECT count(*) FROM routing.mark_first_token(:b1, 100);
SELECT is(routing.heartbeat_inference(:b1, 3), true, 'heartbeat (st-2)');
CREATE TEMP TABLE gu2 AS
SELECT * FROM routing.fail_inference(:b1, 'stream_interrupted', 'stream cut after 3 chunks', NULL, NULL, 40, 'provider');
SELECT results_eq($$SELECT action, outcome_status FROM gu2$$, $$VALUES ('give_up', 'failed_stream_interrupted')$$,
    'stream_interrupted after the first token: give_up');
-- s_cheap: 1000 * 1 / 1e6 + 40 * 2 / 1e6 = 0.00108
SELECT results_eq(format($$SELECT output_tokens, usage_source, cost_usd FROM routing.inferences WHERE id = %s$$, :b1),
    $$VALUES (40, 'provider', 0.00108)$$, 'p_output_tokens and p_usage_source are recorded, cost = input + partial output');

-- A 429 after the first token (a proxy in between) gives up too; no output known: NULL cost.
SELECT pg_temp.decide('st-3') AS c1 \gset
SELECT count(*) FROM routing.mark_first_token(:c1, 100);
CREATE TEMP TABLE gu3 AS SELECT * FROM routing.fail_inference(:c1, 'rate_limited', 'HTTP 429 mid-stream', 429, 1000);
SELECT results_eq($$SELECT action, outcome_status FROM gu3$$, $$VALUES ('give_up', 'failed_stream_interrupted')$$,
    'every error gives up after the first token, rate_limited included');
SELECT results_eq(
    format($$SELECT i.output_tokens, i.usage_source, i.cost_usd, o.cost_actual_usd
               FROM routing.inferences i JOIN routing.routing_outcomes o ON o.id = i.outcome_id WHERE i.id = %s$$, :c1),
    $$VALUES (NULL::int, NULL::text, NULL::numeric, NULL::numeric)$$,
    'output unknown: no count, no source, and the cost is NULL, never 0');
DELETE FROM routing.model_cooldowns;

------------------------------------------------------------------------------ cancelled

SELECT pg_temp.decide('st-4') AS d1 \gset
SELECT count(*) FROM routing.mark_first_token(:d1, 100);
CREATE TEMP TABLE cx1 AS SELECT * FROM routing.fail_inference(:d1, 'cancelled', 'the consumer closed the stream', NULL, NULL, 12);
SELECT results_eq($$SELECT action, outcome_status FROM cx1$$, $$VALUES ('give_up', 'cancelled')$$,
    'cancelled after the first token: give_up, outcome cancelled');
SELECT results_eq(format($$SELECT error_code, output_tokens, usage_source, cost_usd FROM routing.inferences WHERE id = %s$$, :d1),
    $$VALUES ('cancelled', 12, 'estimated', 0.001024)$$, 'the cancelled attempt keeps its partial usage and cost');

SELECT pg_temp.decide('st-5') AS e1 \gset
CREATE TEMP TABLE cx2 AS SELECT * FROM routing.fail_inference(:e1, 'cancelled', 'caller deadline', NULL, NULL, 0);
SELECT results_eq($$SELECT action, next_inference_id, outcome_status FROM cx2$$,
    $$VALUES ('give_up', NULL::bigint, 'cancelled')$$,
    'cancelled before the first token gives up too, although survivors remain');
SELECT is((SELECT cost_usd FROM routing.inferences WHERE id = :e1), 0.001000,
    'cancelled with 0 output tokens: the input is still costed (0.001000, not NULL)');
SELECT is((SELECT judge_status FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM cx2)), NULL,
    'a cancelled outcome is never judged');
SELECT is_empty(
    $$SELECT q.id FROM routing.judge_queue q JOIN routing.routing_outcomes o ON o.id = q.id
       WHERE o.outcome_status IN ('failed_stream_interrupted', 'cancelled')$$,
    'the judge queue holds no partial answer');

------------------------------------------------------------- completion of a stream

SELECT pg_temp.decide('st-6') AS f1 \gset
SELECT count(*) FROM routing.mark_first_token(:f1, 80);
SELECT is(routing.heartbeat_inference(:f1, 50), true, 'heartbeat (st-6)');
SELECT results_eq(
    format($$SELECT outcome_status, cost_actual_usd FROM routing.complete_decision(%s, '{"text": "done"}', 1000, 200, 900, 'estimated')$$, :f1),
    $$VALUES ('succeeded', 0.001400)$$, 'a stream that ends properly completes (usage estimated by the client)');
SELECT results_eq(
    format($$SELECT i.output_tokens, i.usage_source, o.judge_status FROM routing.inferences i
               JOIN routing.routing_outcomes o ON o.id = i.outcome_id WHERE i.id = %s$$, :f1),
    $$VALUES (200, 'estimated', 'unlabeled')$$, 'the completed stream records its usage source and is judgeable');
SELECT is(routing.heartbeat_inference(:f1), false, 'heartbeat after completion: false');

SELECT pg_temp.decide('st-7', false) AS g1 \gset
SELECT count(*) FROM routing.complete_decision(:g1, '{}', 10, 5, 100);
SELECT is((SELECT usage_source FROM routing.inferences WHERE id = :g1),
    'provider', 'complete_decision with five arguments (v0.1): usage_source provider');

--------------------------------------------------------------------- illegal states

SELECT pg_temp.decide('st-8') AS h1 \gset
SELECT count(*) FROM routing.fail_inference(:h1, 'bad_request', 'HTTP 400', 400);
SELECT throws_ok(format($$SELECT * FROM routing.mark_first_token(%s, 10)$$, :h1), '55000', NULL,
    'mark_first_token on an attempt closed without output: 55000');
SELECT throws_ok($$SELECT * FROM routing.mark_first_token(987654321, 10)$$, 'P0002', NULL,
    'mark_first_token on an unknown attempt: P0002');
SELECT throws_ok($$SELECT routing.heartbeat_inference(987654321)$$, 'P0002', NULL,
    'heartbeat_inference on an unknown attempt: P0002');

------------------------------------------------- bad arguments (22023) before state

SELECT pg_temp.fingerprint() AS fp_args \gset

SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision(%L, %L, 'general', 1, 1)$$, repeat('r', 256), :agent)),
    '22023: insert_decision: p_request_id must be at most 255 characters%', 'p_request_id of 256 characters: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision(%L, %L, 'general', 1, 1)$$, repeat('r', 3000), :agent)),
    '22023: %p_request_id%', 'a 3000-character p_request_id: 22023, not 54000 from the index');
SELECT lives_ok(format($$SELECT * FROM routing.insert_decision(%L, %L, 'general', 1, 1)$$, repeat('r', 255), :agent),
    'p_request_id of 255 characters is accepted');
SELECT pg_temp.fingerprint() AS fp_args \gset
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('x', %L, %L, 1, 1)$$, :agent, repeat('t', 65))),
    '22023: insert_decision: p_task_type must be at most 64 characters%', 'p_task_type of 65 characters: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('x', %L, 'general', 1, 1, '{}', NULL)$$, :agent)),
    '22023: %p_streamed%', 'a NULL p_streamed: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('x', %L, 'general', 1, 0)$$, :agent)),
    '22023: %p_max_tokens%', 'p_max_tokens 0 for a chat task: 22023, as in v0.1');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('st-1', %L, 'general', 1, 0)$$, :agent)),
    '22023: %p_max_tokens%', 'p_max_tokens 0 on an existing chat request: 22023 (arguments before state)');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, 1, 1, 'guessed')$$, :h1)),
    '22023: complete_decision: unknown p_usage_source%', 'an unknown p_usage_source: 22023 (before the failed state)');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, 1, 1, NULL)$$, :h1)),
    '22023: %p_usage_source%', 'a NULL p_usage_source on completion: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'x', NULL, NULL, -1)$$, :h1)),
    '22023: %p_output_tokens%', 'a negative p_output_tokens: 22023, not 55000');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'x', NULL, NULL, 1, 'guessed')$$, :h1)),
    '22023: %p_usage_source%', 'an unknown p_usage_source on failure: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, %L, 'x')$$, :h1, repeat('z', 5000))),
    '22023: fail_inference: unknown p_error_code%', 'a 5000-character p_error_code: 22023, named and cut');
SELECT ok(length(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, %L, 'x')$$, :h1, repeat('z', 5000)))) < 300,
    'the message does not echo a huge argument');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'abandoned', 'x')$$, :h1)),
    '22023: %p_error_code%', 'abandoned is the reaper''s code: 22023 from a client');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.mark_first_token(NULL, 1)$$),
    '22023: %p_inference_id%', 'mark_first_token: NULL p_inference_id is 22023');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.mark_first_token(%s, -1)$$, :h1)),
    '22023: %p_ttft_ms%', 'mark_first_token: a negative p_ttft_ms is 22023, not 55000');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.mark_first_token(%s, NULL)$$, :h1)),
    '22023: %p_ttft_ms%', 'mark_first_token: a NULL p_ttft_ms is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing.heartbeat_inference(NULL)$$),
    '22023: %p_inference_id%', 'heartbeat_inference: NULL p_inference_id is 22023');
SELECT alike(pg_temp.error_of(format($$SELECT routing.heartbeat_inference(%s, -5)$$, :h1)),
    '22023: %p_output_tokens%', 'heartbeat_inference: a negative count is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing.heartbeat_inference(987654321, -5)$$),
    '22023: %p_output_tokens%', 'heartbeat_inference: a bad argument on an unknown id is 22023, not P0002');
SELECT is(pg_temp.fingerprint(), :'fp_args', 'none of the refused calls wrote anything');

----------------------------------------------------------------------- as routing_app

SELECT pg_temp.decide('st-app') AS k1 \gset
SET LOCAL ROLE routing_app;
SELECT ok((SELECT first_token_at IS NOT NULL FROM routing.mark_first_token(:k1, 5)), 'routing_app can mark the first token');
SELECT is(routing.heartbeat_inference(:k1, 1), true, 'routing_app can heartbeat');
SELECT results_eq(format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'cancelled', 'user left', NULL, NULL, 1)$$, :k1),
    $$VALUES ('give_up', 'cancelled')$$, 'routing_app can record a cancellation');
SELECT throws_ok($$UPDATE routing.inferences SET heartbeat_at = now()$$, '42501', NULL,
    'routing_app still cannot write the table directly');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
