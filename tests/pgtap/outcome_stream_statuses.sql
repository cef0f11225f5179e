-- pgTAP for the outcome_stream_statuses change: the outcome_status vocabulary gains
-- failed_stream_interrupted and cancelled, under the released CHECK's own name (one
-- CHECK on the column, widened, not a second one beside it), validated afterwards by
-- validate_inference_streaming. Direct writes: the CHECK admits the two new statuses and
-- every v0.1 one, and refuses a status it does not name (23514).
BEGIN;
SELECT plan(11);

----------------------------------------------------------------------------- structure

SELECT is(
    (SELECT count(*)::int FROM pg_catalog.pg_constraint c
      WHERE c.conrelid = 'routing.routing_outcomes'::regclass AND c.contype = 'c'
        AND pg_get_constraintdef(c.oid) LIKE '%outcome_status = ANY%'),
    1, 'one CHECK lists the outcome statuses (widened in place, not duplicated)');
SELECT is(
    (SELECT c.conname::text FROM pg_catalog.pg_constraint c
      WHERE c.conrelid = 'routing.routing_outcomes'::regclass AND c.contype = 'c'
        AND pg_get_constraintdef(c.oid) LIKE '%outcome_status = ANY%'),
    'routing_outcomes_outcome_status_check', 'it keeps the released name routing_outcomes_outcome_status_check');
-- The vocabulary the constraint calls (routing._outcome_statuses(), change vocabularies):
-- exactly v0.1's nine plus the two new ones.
SELECT set_eq(
    $$SELECT s FROM pg_catalog.pg_constraint c, unnest(routing._outcome_statuses()) s
       WHERE c.conrelid = 'routing.routing_outcomes'::regclass
         AND c.conname = 'routing_outcomes_outcome_status_check'
         AND pg_get_constraintdef(c.oid) = 'CHECK ((outcome_status = ANY (routing._outcome_statuses())))'$$,
    ARRAY['succeeded', 'failed_rate_limited', 'failed_provider', 'failed_timeout', 'failed_bad_request',
          'failed_client', 'failed_abandoned', 'failed_pre_dispatch', 'rejected',
          'failed_stream_interrupted', 'cancelled'],
    'the CHECK names exactly the v0.1 statuses, failed_stream_interrupted and cancelled');
SELECT ok(
    (SELECT c.convalidated FROM pg_catalog.pg_constraint c
      WHERE c.conrelid = 'routing.routing_outcomes'::regclass AND c.conname = 'routing_outcomes_outcome_status_check'),
    'the widened CHECK is validated once the plan is deployed (validate_inference_streaming)');

----------------------------------------------------------------------------- behaviour

INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000005a1', 'f0000000-0000-4000-8000-0000000005a1', 'outcome statuses');

-- A terminal outcome written directly, as history from another path would be: no model
-- chosen, so no attempt is needed; only outcome_status varies.
CREATE FUNCTION pg_temp.write_status(p_request text, p_status text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO routing.routing_outcomes (request_id, agent_id, tenant_id, task_type, decision_rule,
                                          outcome_status, completed_at)
    VALUES (p_request, 'a0000000-0000-4000-8000-0000000005a1', 'f0000000-0000-4000-8000-0000000005a1',
            'chat', 'cheapest_clearing_floor', p_status, now());
$$;

SELECT lives_ok($$SELECT pg_temp.write_status('oss-1', 'failed_stream_interrupted')$$,
    'failed_stream_interrupted is a storable outcome_status');
SELECT lives_ok($$SELECT pg_temp.write_status('oss-2', 'cancelled')$$,
    'cancelled is a storable outcome_status');
SELECT lives_ok($$SELECT pg_temp.write_status('oss-3', 'failed_provider')$$,
    'a v0.1 status is still admitted');
SELECT throws_ok($$SELECT pg_temp.write_status('oss-4', 'failed_gloriously')$$,
    '23514', 'new row for relation "routing_outcomes" violates check constraint "routing_outcomes_outcome_status_check"',
    'an unknown status is refused with 23514 by routing_outcomes_outcome_status_check');
SELECT throws_ok($$SELECT pg_temp.write_status('oss-5', 'Cancelled')$$,
    '23514', NULL, 'the vocabulary is case-sensitive: Cancelled is not cancelled');
SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET outcome_status = 'stream_interrupted' WHERE request_id = 'oss-1'$$,
    '23514', NULL, 'an update to an attempt''s error code (not an outcome status) is refused too');
SELECT results_eq(
    $$SELECT request_id, outcome_status FROM routing.routing_outcomes
       WHERE agent_id = 'a0000000-0000-4000-8000-0000000005a1' ORDER BY request_id$$,
    $$VALUES ('oss-1', 'failed_stream_interrupted'), ('oss-2', 'cancelled'), ('oss-3', 'failed_provider')$$,
    'the admitted rows are stored as written, the refused ones not at all');

SELECT * FROM finish();
ROLLBACK;
