-- pgTAP: routing_ledger:reaper — reap_stuck_inferences closes stuck attempts and their
-- outcomes, respects not_before, and a late completion is refused afterwards.
BEGIN;
SELECT plan(35);

-- Structure -------------------------------------------------------------------------

SELECT has_function('routing', 'reap_stuck_inferences', ARRAY['interval', 'timestamp with time zone'],
                    'reap_stuck_inferences(p_older_than, p_as_of) exists');
SELECT function_returns('routing', 'reap_stuck_inferences', ARRAY['interval', 'timestamp with time zone'], 'bigint',
                        'reap_stuck_inferences returns a count');
SELECT is_definer('routing', 'reap_stuck_inferences', ARRAY['interval', 'timestamp with time zone'],
                  'reap_stuck_inferences is SECURITY DEFINER');
SELECT function_privs_are('routing', 'reap_stuck_inferences', ARRAY['interval', 'timestamp with time zone'], 'routing_ops',
                          ARRAY['EXECUTE'], 'routing_ops may reap');
SELECT function_privs_are('routing', 'reap_stuck_inferences', ARRAY['interval', 'timestamp with time zone'], 'routing_app',
                          ARRAY[]::text[], 'routing_app may not reap');
SELECT ok((SELECT pg_get_function_arguments(oid) FROM pg_proc
            WHERE oid = 'routing.reap_stuck_inferences(interval, timestamptz)'::regprocedure)
          = 'p_older_than interval DEFAULT ''01:00:00''::interval, p_as_of timestamp with time zone DEFAULT now()',
          'the threshold defaults to 1 hour and "now" to now()');

-- Fixture -------------------------------------------------------------------------------

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('tap-small', 'tap', 'small', 0.1, 0.3, 0.8, true),
       ('tap-large', 'tap', 'large', 2.0, 6.0, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'tap agent');

CREATE TEMP TABLE t_req (n int PRIMARY KEY, outcome_id bigint, inference_id bigint);
-- 1: stuck 11 days; 2: stuck 23 hours; 3: routed 30 minutes; 6: succeeded long ago.
INSERT INTO t_req
SELECT g, d.outcome_id, d.inference_id
  FROM (VALUES (1), (2), (3), (6)) v (g),
       routing.insert_decision('reap-' || g, 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
UPDATE routing.inferences i SET created_at = now() - a.age
  FROM t_req t, (VALUES (1, interval '11 days'), (2, interval '23 hours'), (3, interval '30 minutes'), (6, interval '20 days')) a (n, age)
 WHERE t.n = a.n AND i.id = t.inference_id;
UPDATE routing.routing_outcomes o SET created_at = i.created_at
  FROM t_req t JOIN routing.inferences i ON i.id = t.inference_id
 WHERE o.id = t.outcome_id;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_req WHERE n = 6), '{}', 100, 20, 500);

-- 4: a retry after a 429, scheduled: created 3 hours ago, due 30 minutes ago.
INSERT INTO t_req SELECT 4, d.outcome_id, d.inference_id
  FROM routing.insert_decision('reap-4', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
UPDATE t_req SET inference_id = f.next_inference_id
  FROM routing.fail_inference((SELECT inference_id FROM t_req WHERE n = 4), 'rate_limited', 'HTTP 429', 429, 1000) f
 WHERE n = 4;
UPDATE routing.inferences SET created_at = now() - interval '3 hours', not_before = now() - interval '30 minutes'
 WHERE id = (SELECT inference_id FROM t_req WHERE n = 4);
UPDATE routing.routing_outcomes SET created_at = now() - interval '3 hours'
 WHERE id = (SELECT outcome_id FROM t_req WHERE n = 4);

-- History from the older write path, written directly:
-- 5: an attempt that belongs to no outcome, 2 days old;
WITH i AS (
    INSERT INTO routing.inferences (agent_id, model_slug, created_at)
    VALUES ('a0000000-0000-4000-8000-000000000001', 'tap-small', now() - interval '2 days') RETURNING id)
INSERT INTO t_req SELECT 5, NULL, i.id FROM i;
-- 7: an in-flight outcome pointing at its attempt, which does not point back, 5 days old;
WITH i AS (
    INSERT INTO routing.inferences (agent_id, model_slug, created_at)
    VALUES ('a0000000-0000-4000-8000-000000000001', 'tap-small', now() - interval '5 days') RETURNING id),
o AS (
    INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, chosen_model_slug, inference_id, created_at)
    SELECT 'legacy-7', 'a0000000-0000-4000-8000-000000000001', 'chat', 'cheapest_clearing_floor', 'tap-small', i.id,
           now() - interval '5 days' FROM i RETURNING id, inference_id)
INSERT INTO t_req SELECT 7, o.id, o.inference_id FROM o;
-- 8: an in-flight outcome whose newest attempt already failed with a 429, 4 days old.
WITH o AS (
    INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, chosen_model_slug, created_at, inference_id)
    VALUES ('legacy-8', 'a0000000-0000-4000-8000-000000000001', 'chat', 'cheapest_clearing_floor', 'tap-small',
            now() - interval '4 days', nextval('routing.inferences_id_seq')) RETURNING id, inference_id),
i AS (
    INSERT INTO routing.inferences (id, outcome_id, agent_id, model_slug, status, error_code, error_message, created_at, completed_at)
    SELECT o.inference_id, o.id, 'a0000000-0000-4000-8000-000000000001', 'tap-small', 'failed', 'rate_limited', 'HTTP 429',
           now() - interval '4 days', now() - interval '4 days' FROM o RETURNING id)
INSERT INTO t_req SELECT 8, o.id, o.inference_id FROM o;

SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'stuck_routed_1h'), 4::bigint,
          'fixture: four attempts are stuck (11 days, 23 hours, 2 and 5 days of history)');

-- Behaviour -------------------------------------------------------------------------

SELECT is(routing.reap_stuck_inferences('1 hour', now() - interval '2 days'), 3::bigint,
          'p_as_of moves "now": two days ago only the 11- and 5-day attempts and the 4-day outcome were stuck');
SELECT results_eq(
    $$SELECT i.status, i.error_code, i.completed_at IS NOT NULL, o.outcome_status, o.completed_at IS NOT NULL
        FROM t_req t JOIN routing.inferences i ON i.id = t.inference_id
        JOIN routing.routing_outcomes o ON o.id = t.outcome_id WHERE t.n = 1$$,
    $$VALUES ('failed'::text, 'abandoned'::text, true, 'failed_abandoned'::text, true)$$,
    'a reaped attempt is failed/abandoned and its outcome failed_abandoned, both completed');
SELECT ok((SELECT error_message ~ 'still routed 9 days after it was due .* over the 01:00:00 threshold'
                  AND error_message ~ 'provider may nevertheless have done'
             FROM routing.inferences WHERE id = (SELECT inference_id FROM t_req WHERE n = 1)),
          'the message names the age (from p_as_of), the due time and the threshold, and what it means');
SELECT results_eq(
    $$SELECT o.outcome_status, o.inference_id = t.inference_id, i.outcome_id
        FROM t_req t JOIN routing.routing_outcomes o ON o.id = t.outcome_id
        JOIN routing.inferences i ON i.id = t.inference_id WHERE t.n = 7$$,
    $$VALUES ('failed_abandoned'::text, true, NULL::bigint)$$,
    'history linked one way: the outcome it points from is closed with it');
SELECT results_eq(
    $$SELECT o.outcome_status FROM routing.routing_outcomes o WHERE o.id = (SELECT outcome_id FROM t_req WHERE n = 8)$$,
    $$VALUES ('failed_rate_limited'::text)$$,
    'an in-flight outcome whose newest attempt already failed gives up with the policy''s status for that error');
SELECT is((SELECT status FROM routing.inferences WHERE id = (SELECT inference_id FROM t_req WHERE n = 2)), 'routed',
          '23 hours is not stuck as of two days ago');

SELECT is(routing.reap_stuck_inferences(), 2::bigint, 'now: the 23-hour attempt and the unowned 2-day attempt');
SELECT results_eq(
    $$SELECT t.n, i.status, i.error_code FROM t_req t JOIN routing.inferences i ON i.id = t.inference_id ORDER BY t.n$$,
    $$VALUES (1, 'failed'::text, 'abandoned'::text), (2, 'failed', 'abandoned'), (3, 'routed', NULL),
             (4, 'routed', NULL), (5, 'failed', 'abandoned'), (6, 'succeeded', NULL), (7, 'failed', 'abandoned'),
             (8, 'failed', 'rate_limited')$$,
    'the 30-minute attempt, the scheduled retry (due 30 minutes ago) and the finished ones are left alone');
SELECT is((SELECT outcome_status FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_req WHERE n = 2)),
          'failed_abandoned', 'the 23-hour outcome is failed_abandoned');
SELECT is(routing.reap_stuck_inferences(), 0::bigint, 'a second run finds nothing: each row is closed once');

SELECT results_eq(
    $$SELECT metric, value FROM routing.integrity_report()
       WHERE metric IN ('stuck_routed_1h', 'terminal_outcome_with_routed_inference', 'outcomes_without_terminal_state_1h')$$,
    $$VALUES ('stuck_routed_1h', 0::bigint), ('terminal_outcome_with_routed_inference', 0),
             ('outcomes_without_terminal_state_1h', 1)$$,
    'the report shows nothing stuck; the outcome of the scheduled retry is still legitimately in flight');

SELECT is(routing.reap_stuck_inferences('10 minutes'), 2::bigint,
          'a shorter threshold reaps the 30-minute attempt and the retry once it is 10 minutes past due');
SELECT ok((SELECT error_message ~ 'still routed 00:30:00 after it was due'
             FROM routing.inferences WHERE id = (SELECT inference_id FROM t_req WHERE n = 4)),
          'the retry''s age counts from not_before, not created_at');
SELECT is((SELECT attempts FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_req WHERE n = 4)), 2,
          'the outcome keeps its attempt count');
SELECT is(routing.reap_stuck_inferences('0 seconds'), 0::bigint, 'a zero threshold is allowed');

-- A completion or failure after the reaper --------------------------------------------

SELECT throws_ok($$SELECT * FROM routing.complete_decision((SELECT inference_id FROM t_req WHERE n = 1), '{}', 1, 1, 1)$$,
                 '55000', NULL, 'a completion arriving after the reaper is refused (55000)');
SELECT throws_ok($$SELECT * FROM routing.fail_inference((SELECT inference_id FROM t_req WHERE n = 2), 'timeout', 'late')$$,
                 '55000', NULL, 'a failure arriving after the reaper is refused (55000)');
SELECT is((SELECT outcome_status FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_req WHERE n = 1)),
          'failed_abandoned', 'the refused completion changed nothing');

-- An attempt in the hands of a live completion is skipped, not waited for. Simulated
-- here by a row lock the reaper's own transaction already holds: SKIP LOCKED only skips
-- other transactions' locks, so this checks the batch loop ends when nothing is left.
SELECT is(routing.reap_stuck_inferences('1 hour', now() + interval '1 day'), 0::bigint,
          'nothing routed is left to reap');

-- A batch larger than one: 2500 stuck attempts, closed in three batches.
INSERT INTO routing.inferences (agent_id, model_slug, created_at)
SELECT 'a0000000-0000-4000-8000-000000000001', 'tap-small', now() - interval '2 hours' - g * interval '1 second'
  FROM generate_series(1, 2500) g;
SELECT is(routing.reap_stuck_inferences(), 2500::bigint, 'more than one batch is reaped in one call');
SELECT is((SELECT count(*) FROM routing.inferences WHERE status = 'routed'), 0::bigint, 'every batch was reaped');

-- Errors ----------------------------------------------------------------------------

SELECT throws_ok($$SELECT routing.reap_stuck_inferences(NULL)$$, '22023', NULL, 'a NULL p_older_than is 22023');
SELECT throws_ok($$SELECT routing.reap_stuck_inferences('-1 hour')$$, '22023',
                 'reap_stuck_inferences: p_older_than must be a non-negative interval, got -01:00:00',
                 'a negative p_older_than is 22023 and named');
SELECT throws_ok($$SELECT routing.reap_stuck_inferences('1 hour', NULL)$$, '22023',
                 'reap_stuck_inferences: p_as_of must not be NULL', 'a NULL p_as_of is 22023');
SELECT throws_ok($$SELECT * FROM routing.fail_inference((SELECT inference_id FROM t_req WHERE n = 3), 'abandoned', 'by hand')$$,
                 '22023', NULL, 'abandoned is the reaper''s alone: fail_inference refuses it (22023)');

-- The order the write path uses, and SKIP LOCKED, are in the code.
SELECT ok((SELECT prosrc ~* 'FOR UPDATE SKIP LOCKED' FROM pg_proc
            WHERE oid = 'routing.reap_stuck_inferences(interval, timestamptz)'::regprocedure),
          'the reaper claims attempts with FOR UPDATE SKIP LOCKED');
SELECT ok((SELECT prosrc ~* 'LIMIT c_batch' FROM pg_proc
            WHERE oid = 'routing.reap_stuck_inferences(interval, timestamptz)'::regprocedure),
          'the reaper works in bounded batches');
SELECT ok((SELECT obj_description(oid, 'pg_proc') ~ '55000' AND obj_description(oid, 'pg_proc') ~ 'provider may have done'
             FROM pg_proc WHERE oid = 'routing.reap_stuck_inferences(interval, timestamptz)'::regprocedure),
          'the comment documents the late completion (55000) and the work the provider may have done');

SELECT * FROM finish();
ROLLBACK;
