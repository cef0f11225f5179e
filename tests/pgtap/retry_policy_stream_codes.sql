-- pgTAP for the retry_policy_stream_codes change: the policy rows for the two v0.2 error
-- codes (stream_interrupted fails over, cancelled gives up with the outcome status
-- cancelled), the policy's CHECKs widened under their own names and validated later, and
-- what fail_inference does with them before the first token (after it every error gives
-- up: fail_inference's own rule, shown once for contrast).
BEGIN;
SELECT plan(16);

----------------------------------------------------------------------------- structure

SELECT results_eq(
    $$SELECT error_code, same_model_retries, then_action, give_up_status FROM routing.retry_policy
       WHERE error_code IN ('stream_interrupted', 'cancelled') ORDER BY error_code$$,
    $$VALUES ('cancelled', 0, 'give_up', 'cancelled'),
             ('stream_interrupted', 0, 'failover', 'failed_stream_interrupted')$$,
    'seeded: stream_interrupted fails over (no same-model retry), cancelled gives up as cancelled');
SELECT results_eq(
    $$SELECT c.conname::text COLLATE "default", c.convalidated FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'routing.retry_policy'::regclass AND c.contype = 'c'
         AND (pg_get_constraintdef(c.oid) LIKE '%error_code = ANY%' OR pg_get_constraintdef(c.oid) LIKE '%give_up_status = ANY%')
       ORDER BY 1$$,
    $$VALUES ('retry_policy_error_code_check', true), ('retry_policy_give_up_status_check', true)$$,
    'one CHECK per list, under the released names, validated (validate_inference_streaming)');
SELECT set_eq(
    $$SELECT s FROM pg_catalog.pg_constraint c, unnest(routing._error_codes()) s
       WHERE c.conrelid = 'routing.retry_policy'::regclass AND c.conname = 'retry_policy_error_code_check'
         AND pg_get_constraintdef(c.oid) = 'CHECK ((error_code = ANY (routing._error_codes())))'$$,
    ARRAY['rate_limited', 'server_error', 'timeout', 'connection_error', 'bad_request', 'auth',
          'client_error', 'abandoned', 'stream_interrupted', 'cancelled'],
    'retry_policy_error_code_check: the v0.1 codes plus stream_interrupted and cancelled');
SELECT set_eq(
    $$SELECT s FROM pg_catalog.pg_constraint c, unnest(routing._outcome_statuses()) s
       WHERE c.conrelid = 'routing.retry_policy'::regclass AND c.conname = 'retry_policy_give_up_status_check'
         AND pg_get_constraintdef(c.oid) LIKE 'CHECK (((give_up_status = ANY (routing._outcome_statuses())) AND %'
         AND s NOT IN (SELECT m[1] FROM regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''::text', 'g') m)$$,
    ARRAY['failed_rate_limited', 'failed_provider', 'failed_timeout', 'failed_bad_request', 'failed_client',
          'failed_abandoned', 'failed_stream_interrupted', 'cancelled'],
    'retry_policy_give_up_status_check: the v0.1 statuses plus failed_stream_interrupted and cancelled');
SELECT throws_ok(
    $$UPDATE routing.retry_policy SET error_code = 'stream_stalled' WHERE error_code = 'stream_interrupted'$$,
    '23514', NULL, 'an error code outside the vocabulary is refused');
SELECT throws_ok(
    $$UPDATE routing.retry_policy SET give_up_status = 'interrupted' WHERE error_code = 'stream_interrupted'$$,
    '23514', NULL, 'a give-up status outside the vocabulary is refused');

----------------------------------------------------------------------------- behaviour

-- general's floor is 0.68: both models clear it; rp_cheap ranks first, rp_next is the
-- failover.
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('rp_cheap', 'p1', 'cheap-1', 1, 2, 0.80, true),
       ('rp_next',  'p2', 'next-1',  3, 4, 0.80, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000005b1', 'f0000000-0000-4000-8000-0000000005b1', 'stream codes');

CREATE TEMP TABLE t_d AS
SELECT g AS n, d.outcome_id, d.inference_id, d.model_slug
  FROM generate_series(1, 3) g,
       routing.insert_decision('rp-' || g, 'a0000000-0000-4000-8000-0000000005b1', 'general', 1000, 500,
                               '{"stream": true}', true) d;
SELECT results_eq($$SELECT DISTINCT model_slug FROM t_d$$, $$VALUES ('rp_cheap')$$,
    'fixture: every request is dispatched to rp_cheap first');

-- 1: a stream that broke before its first token fails over to the next survivor.
CREATE TEMP TABLE t_f1 AS
SELECT * FROM routing.fail_inference((SELECT inference_id FROM t_d WHERE n = 1), 'stream_interrupted',
                                     'stream closed before any chunk');
SELECT results_eq($$SELECT action, model_slug, outcome_status FROM t_f1$$,
    $$VALUES ('failover', 'rp_next', NULL::text)$$,
    'stream_interrupted before the first token: failover to rp_next, the outcome still in flight');
SELECT results_eq(
    $$SELECT i.attempt_no, i.model_slug, i.status FROM routing.inferences i
       WHERE i.outcome_id = (SELECT outcome_id FROM t_d WHERE n = 1) ORDER BY i.attempt_no$$,
    $$VALUES (1, 'rp_cheap', 'failed'), (2, 'rp_next', 'routed')$$,
    'the broken attempt is failed and a second one is routed on rp_next');
SELECT is((SELECT inference_id FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_d WHERE n = 1)),
    (SELECT next_inference_id FROM t_f1), 'the outcome points at the new attempt');

-- 2: a cancellation before the first token gives up: the caller stopped.
SELECT results_eq(
    $$SELECT action, next_inference_id, outcome_status
        FROM routing.fail_inference((SELECT inference_id FROM t_d WHERE n = 2), 'cancelled', 'caller went away')$$,
    $$VALUES ('give_up', NULL::bigint, 'cancelled')$$,
    'cancelled before the first token: give_up, no new attempt, outcome cancelled');
SELECT results_eq(
    $$SELECT o.outcome_status, o.attempts, o.completed_at IS NOT NULL, o.judge_status
        FROM routing.routing_outcomes o WHERE o.id = (SELECT outcome_id FROM t_d WHERE n = 2)$$,
    $$VALUES ('cancelled', 1, true, NULL::text)$$,
    'the cancelled outcome is terminal after one attempt, and never judged');
SELECT is((SELECT count(*)::int FROM routing.inferences WHERE outcome_id = (SELECT outcome_id FROM t_d WHERE n = 2)),
    1, 'no second attempt was written for the cancelled request');

-- 3: the same stream_interrupted after the first token gives up (fail_inference's rule
-- over the policy): what the caller saw cannot be retried.
SELECT is((SELECT count(*)::int FROM routing.mark_first_token((SELECT inference_id FROM t_d WHERE n = 3), 120)), 1,
    'fixture: request 3''s stream has shown its first token');
SELECT results_eq(
    $$SELECT action, outcome_status
        FROM routing.fail_inference((SELECT inference_id FROM t_d WHERE n = 3), 'stream_interrupted', 'cut', NULL, NULL, 40)$$,
    $$VALUES ('give_up', 'failed_stream_interrupted')$$,
    'stream_interrupted after the first token: give_up with the policy''s give_up_status');

-- The policy is the table: an operator who makes stream_interrupted give up gets that.
UPDATE routing.retry_policy SET then_action = 'give_up' WHERE error_code = 'stream_interrupted';
SELECT results_eq(
    $$SELECT action, outcome_status
        FROM routing.fail_inference((SELECT next_inference_id FROM t_f1), 'stream_interrupted', 'again')$$,
    $$VALUES ('give_up', 'failed_stream_interrupted')$$,
    'fail_inference follows the policy row: changed to give_up, it gives up');

SELECT * FROM finish();
ROLLBACK;
