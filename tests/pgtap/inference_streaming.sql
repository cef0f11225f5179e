-- pgTAP for the streaming vocabulary changes: inference_streaming (columns, error codes,
-- _routed_past_due), outcome_stream_statuses, retry_policy_stream_codes, and their
-- validation (validate_inference_streaming).
BEGIN;
SELECT plan(24);

SELECT has_column('routing', 'inferences', 'streamed', 'inferences.streamed');
SELECT col_type_is('routing', 'inferences', 'first_token_at', 'timestamp with time zone', 'inferences.first_token_at');
SELECT col_type_is('routing', 'inferences', 'heartbeat_at', 'timestamp with time zone', 'inferences.heartbeat_at');
SELECT col_type_is('routing', 'inferences', 'usage_source', 'text', 'inferences.usage_source');
SELECT col_type_is('routing', 'inferences', 'ttft_ms', 'integer', 'inferences.ttft_ms');
SELECT col_type_is('routing', 'inferences', 'streamed', 'boolean', 'inferences.streamed is boolean');

SELECT results_eq(
    $$SELECT c.conrelid::regclass::text COLLATE "default", c.conname::text COLLATE "default", c.convalidated
        FROM pg_catalog.pg_constraint c
       WHERE c.conname IN ('inferences_error_code_check', 'inference_usage_source_known', 'inference_ttft_non_negative',
                           'routing_outcomes_outcome_status_check', 'retry_policy_error_code_check',
                           'retry_policy_give_up_status_check')
       ORDER BY 1, 2$$,
    $$VALUES ('routing.inferences', 'inference_ttft_non_negative', true),
             ('routing.inferences', 'inference_usage_source_known', true),
             ('routing.inferences', 'inferences_error_code_check', true),
             ('routing.retry_policy', 'retry_policy_error_code_check', true),
             ('routing.retry_policy', 'retry_policy_give_up_status_check', true),
             ('routing.routing_outcomes', 'routing_outcomes_outcome_status_check', true)$$,
    'the widened checks keep their v0.1 names, one each, and are validated by validate_inference_streaming');
-- The lists live in their vocabulary functions (change vocabularies), which the CHECKs call.
SELECT ok((SELECT pg_get_constraintdef(oid) LIKE '%routing._error_codes()%' FROM pg_constraint
            WHERE conrelid = 'routing.inferences'::regclass AND conname = 'inferences_error_code_check')
          AND routing._error_codes() @> ARRAY['stream_interrupted', 'cancelled'],
    'inferences.error_code admits stream_interrupted and cancelled');
SELECT ok((SELECT pg_get_constraintdef(oid) LIKE '%routing._outcome_statuses()%' FROM pg_constraint
            WHERE conrelid = 'routing.routing_outcomes'::regclass AND conname = 'routing_outcomes_outcome_status_check')
          AND routing._outcome_statuses() @> ARRAY['failed_stream_interrupted', 'cancelled'],
    'routing_outcomes.outcome_status admits failed_stream_interrupted and cancelled');
SELECT ok(routing._error_codes() @> ARRAY['rate_limited', 'server_error', 'timeout', 'connection_error',
                                           'bad_request', 'auth', 'client_error', 'abandoned'],
    'the v0.1 codes are still admitted');

-- Direct writes: the checks refuse what the vocabulary does not name.
INSERT INTO routing.models (slug, provider, provider_model) VALUES ('voc', 'p', 'm');
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000000d1', 'f0000000-0000-4000-8000-0000000000d1', 'voc');
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, error_code, error_message, completed_at)
      VALUES ('a0000000-0000-4000-8000-0000000000d1', 'voc', 'failed', 'exploded', 'x', now())$$,
    '23514', NULL, 'an unknown error_code is refused');
SELECT lives_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, error_code, error_message, completed_at)
      VALUES ('a0000000-0000-4000-8000-0000000000d1', 'voc', 'failed', 'stream_interrupted', 'x', now())$$,
    'stream_interrupted is a storable error_code');
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, ttft_ms) VALUES ('a0000000-0000-4000-8000-0000000000d1', 'voc', -1)$$,
    '23514', NULL, 'a negative ttft_ms is refused');
SELECT throws_ok(
    $$INSERT INTO routing.retry_policy (error_code, same_model_retries, then_action, give_up_status)
      VALUES ('exploded', 0, 'give_up', 'cancelled')$$,
    '23514', NULL, 'retry_policy refuses an error code outside the vocabulary');
SELECT throws_ok(
    $$UPDATE routing.retry_policy SET give_up_status = 'failed_gloriously' WHERE error_code = 'cancelled'$$,
    '23514', NULL, 'retry_policy refuses a give-up status outside the vocabulary');
SELECT is((SELECT streamed FROM routing.inferences WHERE model_slug = 'voc' LIMIT 1), false,
    'a row loaded with the named columns alone gets streamed = false');

-- _routed_past_due: the latest of the three before the cutoff.
SELECT ok(routing._routed_past_due('2030-01-01 10:00+00', NULL, NULL, '2030-01-01 11:00+00'), 'created before the cutoff: past due');
SELECT ok(NOT routing._routed_past_due('2030-01-01 10:00+00', '2030-01-01 11:30+00', NULL, '2030-01-01 11:00+00'),
    'scheduled after the cutoff: not past due');
SELECT ok(NOT routing._routed_past_due('2030-01-01 10:00+00', NULL, '2030-01-01 11:00+00', '2030-01-01 11:00+00'),
    'heard of at the cutoff: not past due');
SELECT ok(routing._routed_past_due('2030-01-01 10:00+00', '2030-01-01 10:10+00', '2030-01-01 10:50+00', '2030-01-01 11:00+00'),
    'all three before the cutoff: past due');
SELECT ok(NOT routing._routed_past_due('2030-01-01 12:00+00', NULL, '2030-01-01 10:00+00', '2030-01-01 11:00+00'),
    'an old heartbeat does not age a newer attempt');
SELECT is(
    (SELECT p.provolatile::text || p.prosecdef::text || coalesce(array_length(p.proconfig, 1), 0)::text
       FROM pg_proc p WHERE p.oid = 'routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz)'::regprocedure),
    'ifalse0', '_routed_past_due is IMMUTABLE, INVOKER and has no SET clause (so it can be inlined)');
SELECT ok(NOT has_function_privilege('routing_app', 'routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz)', 'EXECUTE'),
    'routing_app may not execute _routed_past_due');
SELECT ok(has_function_privilege('routing_readonly', 'routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz)', 'EXECUTE'),
    'routing_readonly may (the view stuck_inferences calls it)');

SELECT * FROM finish();
ROLLBACK;
