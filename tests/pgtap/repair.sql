-- pgTAP: routing_ledger:repair — repair_orphans (dry run, apply) and rollback_repair on
-- history written by the older two-phase path, loaded while the CHECK was NOT VALID.
BEGIN;
SELECT plan(80);

-- Structure -------------------------------------------------------------------------

SELECT has_table('routing', 'repair_runs', 'table repair_runs exists');
SELECT has_table('routing', 'repair_backup', 'table repair_backup exists');
SELECT columns_are('routing', 'repair_backup',
                   ARRAY['run_id', 'table_name', 'row_id', 'row_data', 'after_data', 'taken_at'],
                   'repair_backup holds run, table, row id, the whole old row as jsonb, the new one, and when');
SELECT col_type_is('routing', 'repair_backup', 'row_data', 'jsonb', 'before-images are jsonb');
SELECT has_function('routing', 'repair_orphans', ARRAY['interval', 'boolean'], 'repair_orphans(p_window, p_apply) exists');
SELECT has_function('routing', 'rollback_repair', ARRAY['bigint'], 'rollback_repair(p_run_id) exists');
SELECT function_returns('routing', 'repair_orphans', ARRAY['interval', 'boolean'], 'setof record', 'repair_orphans returns rows');
SELECT function_returns('routing', 'rollback_repair', ARRAY['bigint'], 'bigint', 'rollback_repair returns a count');
SELECT is_definer('routing', 'repair_orphans', ARRAY['interval', 'boolean'], 'repair_orphans is SECURITY DEFINER');
SELECT is_definer('routing', 'rollback_repair', ARRAY['bigint'], 'rollback_repair is SECURITY DEFINER');
SELECT function_privs_are('routing', 'repair_orphans', ARRAY['interval', 'boolean'], 'routing_ops', ARRAY['EXECUTE'],
                          'routing_ops may repair');
SELECT function_privs_are('routing', 'rollback_repair', ARRAY['bigint'], 'routing_ops', ARRAY['EXECUTE'],
                          'routing_ops may roll back');
SELECT function_privs_are('routing', 'repair_orphans', ARRAY['interval', 'boolean'], 'routing_app', ARRAY[]::text[],
                          'routing_app may not repair');
SELECT ok((SELECT pg_get_function_arguments(oid) FROM pg_proc WHERE oid = 'routing.repair_orphans(interval, boolean)'::regprocedure)
          = 'p_window interval DEFAULT ''00:00:03''::interval, p_apply boolean DEFAULT false',
          'a 3-second window and a dry run by default');

-- History of the older path ---------------------------------------------------------
-- The CHECK is dropped around the load and added back NOT VALID, as on a production
-- database deployed up to outcome_requires_inference.

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('tap-small', 'tap', 'small', 0.1, 0.3, 0.8, true), ('tap-large', 'tap', 'large', 2, 6, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name) VALUES
    ('a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'agent a'),
    ('a0000000-0000-4000-8000-000000000002', 'f0000000-0000-4000-8000-000000000001', 'agent b');

ALTER TABLE routing.routing_outcomes DROP CONSTRAINT outcome_requires_inference_when_model_chosen;

-- Outcomes: id, agent (1|2), model, inference_id, status, cost, rule, age.
INSERT INTO routing.routing_outcomes
       (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug, inference_id, outcome_status,
        cost_actual_usd, created_at, completed_at)
SELECT v.id, 'legacy-' || v.id, ('a0000000-0000-4000-8000-00000000000' || v.agent)::uuid, 'chat', v.rule, v.model,
       v.inf, v.status, v.cost, now() - v.age, CASE WHEN v.status IS NOT NULL THEN now() - v.age + interval '3 seconds' END
  FROM (VALUES
    -- one-to-one: in flight / routed; succeeded, same cost at another scale; failed, attempt 2.9 s earlier
    (1001, 1, 'tap-small', NULL::bigint, NULL::text, NULL::numeric, 'cheapest_clearing_floor', interval '10 days'),
    (1002, 2, 'tap-large', NULL, 'succeeded', 0.00050, 'cheapest_clearing_floor', interval '5 days'),
    (1003, 1, 'tap-large', NULL, 'failed_rate_limited', NULL, 'cheapest_clearing_floor', interval '4 days'),
    -- ambiguous: two attempts for 1004; one attempt for 1005 and 1006
    (1004, 2, 'tap-small', NULL, NULL, NULL, 'cheapest_clearing_floor', interval '9 days'),
    (1005, 1, 'tap-small', NULL, 'succeeded', 0.0002, 'cheapest_clearing_floor', interval '2 days'),
    (1006, 1, 'tap-small', NULL, 'succeeded', 0.0002, 'cheapest_clearing_floor', interval '2 days 1 second'),
    -- no match: cost differs; attempt 4 s away
    (1007, 2, 'tap-small', NULL, 'succeeded', 0.0012, 'cheapest_clearing_floor', interval '6 days'),
    (1008, 2, 'tap-large', NULL, 'failed_rate_limited', NULL, 'cheapest_clearing_floor', interval '7 days'),
    -- legitimate, no dispatch: rejected, refused before dispatch (a model chosen, nothing sent)
    (1009, 1, NULL, NULL, 'rejected', NULL, 'no_candidate_clears_floor', interval '8 days'),
    (1010, 2, 'tap-small', NULL, 'failed_pre_dispatch', NULL, 'failed_pre_dispatch', interval '8 days'),
    -- back-filled one way (1011 -> 2011); an orphan next to that attempt must not take it
    (1011, 1, 'tap-small', 2011, 'succeeded', 0.0003, 'cheapest_clearing_floor', interval '12 days'),
    (1012, 1, 'tap-small', NULL, 'succeeded', 0.0003, 'cheapest_clearing_floor', interval '12 days 1 second'),
    -- an orphan that already owns an attempt (2013 -> 1013): never re-linked
    (1013, 2, 'tap-small', NULL, 'failed_rate_limited', NULL, 'cheapest_clearing_floor', interval '11 days')
  ) AS v (id, agent, model, inf, status, cost, rule, age);

INSERT INTO routing.inferences (id, outcome_id, agent_id, model_slug, status, error_code, error_message, cost_usd,
                                created_at, completed_at)
SELECT v.id, v.outcome, ('a0000000-0000-4000-8000-00000000000' || v.agent)::uuid, v.model, v.status,
       CASE WHEN v.status = 'failed' THEN 'rate_limited' END, CASE WHEN v.status = 'failed' THEN 'HTTP 429' END,
       v.cost, now() - v.age, CASE WHEN v.status <> 'routed' THEN now() - v.age + interval '2 seconds' END
  FROM (VALUES
    (2001, NULL::bigint, 1, 'tap-small', 'routed', NULL::numeric, interval '10 days' - interval '1.2 seconds'),
    (2002, NULL, 2, 'tap-large', 'succeeded', 0.0005, interval '5 days' - interval '0.8 seconds'),
    (2003, NULL, 1, 'tap-large', 'failed', NULL, interval '4 days' + interval '2.9 seconds'),
    (2041, NULL, 2, 'tap-small', 'routed', NULL, interval '9 days' - interval '1 second'),
    (2042, NULL, 2, 'tap-small', 'routed', NULL, interval '9 days' - interval '2 seconds'),
    (2005, NULL, 1, 'tap-small', 'succeeded', 0.0002, interval '2 days' - interval '0.5 seconds'),
    (2007, NULL, 2, 'tap-small', 'succeeded', 0.0021, interval '6 days' - interval '1 second'),
    (2008, NULL, 2, 'tap-large', 'failed', NULL, interval '7 days' - interval '4 seconds'),
    (2010, NULL, 2, 'tap-small', 'failed', NULL, interval '8 days' - interval '1 second'),
    (2011, NULL, 1, 'tap-small', 'succeeded', 0.0003, interval '12 days'),
    (2013, 1013, 2, 'tap-small', 'failed', NULL, interval '11 days' - interval '1 second')
  ) AS v (id, outcome, agent, model, status, cost, age);

SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes ADD CONSTRAINT outcome_requires_inference_when_model_chosen
    CHECK (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL) NOT VALID;
COMMENT ON CONSTRAINT outcome_requires_inference_when_model_chosen ON routing.routing_outcomes IS 'tap: the comment survives';
-- Back to the default: the functions below run with deferred checks pending, as in life.
SET CONSTRAINTS ALL DEFERRED;

-- New traffic through the functions: never touched.
SELECT count(*) FROM routing.insert_decision('live-1', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d,
                     routing.complete_decision(d.inference_id, '{}', 100, 20, 300) c;

CREATE TEMP TABLE t_before AS
SELECT 'routing_outcomes'::text AS t, o.id, to_jsonb(o) AS j FROM routing.routing_outcomes o
UNION ALL SELECT 'inferences', i.id, to_jsonb(i) FROM routing.inferences i;
CREATE TEMP VIEW t_now AS
SELECT 'routing_outcomes'::text AS t, o.id, to_jsonb(o) AS j FROM routing.routing_outcomes o
UNION ALL SELECT 'inferences', i.id, to_jsonb(i) FROM routing.inferences i;

-- Dry run -----------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT run_id, outcome_id, inference_id, action FROM routing.repair_orphans()$$,
    $$VALUES (NULL::bigint, 1001::bigint, 2001::bigint, 'would_relink'::text), (NULL, 1002, 2002, 'would_relink'),
             (NULL, 1003, 2003, 'would_relink'), (NULL, 1004, 2041, 'ambiguous'), (NULL, 1004, 2042, 'ambiguous'),
             (NULL, 1005, 2005, 'ambiguous'), (NULL, 1006, 2005, 'ambiguous'), (NULL, 1007, NULL, 'no_match'),
             (NULL, 1008, NULL, 'no_match'), (NULL, 1012, NULL, 'no_match'), (NULL, 1013, 2013, 'ambiguous')$$,
    'the dry run classifies every orphan: one-to-one pairs, ambiguous ones (per competing pair), unmatched ones');
SELECT is_empty($$SELECT * FROM t_now EXCEPT SELECT * FROM t_before$$, 'the dry run changed no row');
SELECT is((SELECT count(*) FROM routing.repair_runs), 0::bigint, 'the dry run recorded no run');
SELECT results_eq(
    $$SELECT outcome_id, inference_id, action FROM routing.repair_orphans('5 seconds') WHERE outcome_id = 1008$$,
    $$VALUES (1008::bigint, 2008::bigint, 'would_relink'::text)$$,
    'p_window widens the match');
SELECT results_eq(
    $$SELECT count(*) FROM routing.repair_orphans('0 seconds') WHERE action = 'would_relink'$$,
    $$VALUES (0::bigint)$$,
    'a zero window matches nothing written at another instant');

-- Apply -------------------------------------------------------------------------------

CREATE TEMP TABLE t_run1 AS SELECT * FROM routing.repair_orphans(p_apply => true);
SELECT results_eq(
    $$SELECT outcome_id, inference_id, action FROM t_run1 WHERE action = 'relinked'$$,
    $$VALUES (1001::bigint, 2001::bigint, 'relinked'::text), (1002, 2002, 'relinked'), (1003, 2003, 'relinked')$$,
    'apply re-links exactly the one-to-one pairs');
SELECT is((SELECT count(DISTINCT run_id) FROM t_run1 WHERE run_id IS NOT NULL), 1::bigint, 'every row names the run');
SELECT is((SELECT count(*) FROM t_run1), 11::bigint, 'and reports the others as the dry run did');
SELECT results_eq(
    $$SELECT match_window, applied, ambiguous, no_match, rolled_back_at, run_by = session_user FROM routing.repair_runs$$,
    $$VALUES (interval '3 seconds', 3::bigint, 4::bigint, 3::bigint, NULL::timestamptz, true)$$,
    'the run is recorded with its window, its counts and who ran it');
SELECT results_eq(
    $$SELECT o.id, o.inference_id, i.outcome_id, o.attempts FROM routing.routing_outcomes o
        JOIN routing.inferences i ON i.id = o.inference_id WHERE o.id IN (1001, 1002, 1003) ORDER BY o.id$$,
    $$VALUES (1001::bigint, 2001::bigint, 1001::bigint, 1), (1002, 2002, 1002, 1), (1003, 2003, 1003, 1)$$,
    'each pair is linked both ways, with the attempt count');
SELECT results_eq(
    $$SELECT id, outcome_status, judge_status FROM routing.routing_outcomes WHERE id IN (1001, 1002, 1003) ORDER BY id$$,
    $$VALUES (1001::bigint, NULL::text, NULL::text), (1002, 'succeeded', 'unlabeled'), (1003, 'failed_rate_limited', NULL)$$,
    'a re-linked succeeded outcome becomes judgeable; the rest keep their state');
SELECT ok(EXISTS (SELECT FROM routing.judge_queue WHERE id = 1002), 'the recovered outcome is in the judge queue');
SELECT results_eq(
    $$SELECT b.table_name, b.row_id, b.row_data FROM routing.repair_backup b ORDER BY 1, 2$$,
    $$SELECT t, id, j FROM t_before WHERE id IN (1001, 1002, 1003, 2001, 2002, 2003) ORDER BY 1, 2$$,
    'the before-image of every changed row, and only those, is in repair_backup');
SELECT is_empty(
    $$SELECT b.row_id FROM routing.repair_backup b JOIN t_now n ON n.t = b.table_name AND n.id = b.row_id
       WHERE b.after_data IS DISTINCT FROM n.j$$,
    'the after-image of every changed row is kept too');
SELECT is_empty(
    $$SELECT * FROM t_now WHERE id NOT IN (1001, 1002, 1003, 2001, 2002, 2003)
      EXCEPT SELECT * FROM t_before$$,
    'nothing else changed: rejected, failed_pre_dispatch, ambiguous, unmatched, back-filled and new rows are untouched');

CREATE TEMP TABLE t_after1 AS SELECT * FROM t_now;
CREATE TEMP TABLE t_run2 AS SELECT * FROM routing.repair_orphans(p_apply => true);
SELECT is((SELECT count(*) FROM t_run2 WHERE action = 'relinked'), 0::bigint, 'a second run has nothing left to re-link');
SELECT is_empty($$SELECT * FROM t_now EXCEPT SELECT * FROM t_after1$$, 'and changes nothing');
SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'orphan_outcomes'), 7::bigint,
          'the ambiguous and unmatched orphans remain for a human');

-- Rollback ----------------------------------------------------------------------------

SELECT is(routing.rollback_repair((SELECT DISTINCT run_id FROM t_run1)), 6::bigint,
          'rollback restores the six rows of the run (with deferred checks pending in the transaction)');
SELECT is_empty($$SELECT * FROM t_now EXCEPT SELECT * FROM t_before$$, 'every row is exactly as before the repair');
SELECT is_empty($$SELECT * FROM t_before EXCEPT SELECT * FROM t_now$$, 'and no row is missing');
SELECT is((SELECT pg_get_constraintdef(c.oid) || ' / ' || c.convalidated || ' / ' || obj_description(c.oid, 'pg_constraint')
             FROM pg_constraint c WHERE c.conrelid = 'routing.routing_outcomes'::regclass
              AND c.conname = 'outcome_requires_inference_when_model_chosen'),
          'CHECK (((chosen_model_slug IS NULL) OR (decision_rule = ''failed_pre_dispatch''::text) OR (inference_id IS NOT NULL))) NOT VALID / false / tap: the comment survives',
          'the constraint is back, NOT VALID, with its definition and comment');
SELECT throws_ok($$UPDATE routing.routing_outcomes SET inference_id = NULL WHERE id = (SELECT min(id) FROM routing.routing_outcomes WHERE request_id = 'live-1')$$,
                 '23514', NULL, 'and it is enforced again on new writes');
SELECT ok((SELECT rolled_back_at IS NOT NULL AND rolled_back_rows = 6 FROM routing.repair_runs
            WHERE run_id = (SELECT DISTINCT run_id FROM t_run1)),
          'the run is marked rolled back');
SELECT throws_ok(format('SELECT routing.rollback_repair(%s)', (SELECT DISTINCT run_id FROM t_run1)),
                 '55000', NULL, 'a run is rolled back once (55000)');
SELECT is((SELECT count(*) FROM routing.repair_orphans() WHERE action = 'would_relink'), 3::bigint,
          'after the rollback the pairs are orphans again');

-- A row changed after the repair is not silently undone.
CREATE TEMP TABLE t_run3 AS SELECT * FROM routing.repair_orphans(p_apply => true);
SELECT is(routing.reap_stuck_inferences(), 3::bigint, 'the reaper closes the re-linked attempt (and the ambiguous pair''s two)');
SELECT throws_ok(format('SELECT routing.rollback_repair(%s)', (SELECT DISTINCT run_id FROM t_run3)),
                 '55000', NULL, 'rollback refuses when a row of the run changed since (55000)');
SELECT is((SELECT outcome_status FROM routing.routing_outcomes WHERE id = 1001), 'failed_abandoned',
          'and leaves the reaper''s work in place');

-- Errors ------------------------------------------------------------------------------

SELECT throws_ok($$SELECT routing.rollback_repair(999999)$$, 'P0002', 'rollback_repair: unknown repair run 999999',
                 'an unknown run is P0002');
SELECT throws_ok($$SELECT routing.rollback_repair(NULL)$$, '22023', 'rollback_repair: p_run_id must not be NULL',
                 'a NULL run is 22023');
SELECT throws_ok($$SELECT * FROM routing.repair_orphans(NULL)$$, '22023', NULL, 'a NULL p_window is 22023');
SELECT throws_ok($$SELECT * FROM routing.repair_orphans('-1 second')$$, '22023',
                 'repair_orphans: p_window must be a non-negative interval, got -00:00:01', 'a negative p_window is 22023');
SELECT throws_ok($$SELECT * FROM routing.repair_orphans('3 seconds', NULL)$$, '22023',
                 'repair_orphans: p_apply must not be NULL', 'a NULL p_apply is 22023');

-- Bounds (v0.2): intervals 0..100 years, p_as_of 1970..9999, 22023 before any arithmetic
-- (v0.1.0 raised 22008 from "created_at - p_window" near the type's limits).
SELECT throws_ok($$SELECT * FROM routing.repair_orphans('101 years')$$, '22023',
                 'repair_orphans: p_window must be an interval of at most 100 years, got 101 years',
                 'a p_window over 100 years is 22023, naming the argument and the bound');
SELECT throws_ok($$SELECT * FROM routing.repair_orphans('178000000 years', true)$$, '22023', NULL,
                 'the largest interval is 22023, not 22008 (apply)');
SELECT throws_ok($$SELECT * FROM routing.repair_orphans('9223372036854775807 microseconds')$$, '22023', NULL,
                 'the largest microsecond count is 22023, not 22008 (dry run)');
SELECT throws_ok($$SELECT * FROM routing.repair_orphans('1 year -400 days')$$, '22023', NULL,
                 'an interval negative as a whole is 22023');
SELECT lives_ok($$SELECT * FROM routing.repair_orphans('100 years')$$, 'a p_window of exactly 100 years is accepted');
SELECT throws_ok($$SELECT routing.rollback_repair(-9223372036854775808)$$, 'P0002', NULL,
                 'the smallest bigint run id is unknown (P0002), not an error of its own');

-- close_unmatched_orphans: the explicit, reversible decision for what nothing matched.
SELECT has_function('routing', 'close_unmatched_orphans', ARRAY['interval', 'interval', 'boolean', 'timestamp with time zone'],
    'close_unmatched_orphans(p_window, p_older_than, p_apply, p_as_of) exists');
SELECT function_privs_are('routing', 'close_unmatched_orphans', ARRAY['interval', 'interval', 'boolean', 'timestamp with time zone'],
    'routing_ops', ARRAY['EXECUTE'], 'routing_ops may close unmatched orphans');
SELECT function_privs_are('routing', 'close_unmatched_orphans', ARRAY['interval', 'interval', 'boolean', 'timestamp with time zone'],
    'routing_app', ARRAY[]::text[], 'routing_app may not');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans(NULL)$$, '22023', NULL, 'close: a NULL p_window is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '-1 hour')$$, '22023', NULL,
    'close: a negative p_older_than is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '1 hour', NULL)$$, '22023', NULL,
    'close: a NULL p_apply is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '1 hour', false, NULL)$$, '22023', NULL,
    'close: a NULL p_as_of is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('10000 years')$$, '22023',
    'close_unmatched_orphans: p_window must be an interval of at most 100 years, got 10000 years',
    'close: a p_window over 100 years is 22023, not 22008');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '178000000 years')$$, '22023', NULL,
    'close: a p_older_than over 100 years is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '1 hour', false, 'infinity')$$, '22023', NULL,
    'close: p_as_of infinity is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '1 hour', true, '-infinity')$$, '22023', NULL,
    'close: p_as_of -infinity is 22023 (apply)');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '1 hour', false, '294276-12-31 23:59:59+00')$$,
    '22023', NULL, 'close: p_as_of in 294276 AD is 22023');
SELECT throws_ok($$SELECT * FROM routing.close_unmatched_orphans('3 seconds', '1 hour', false, '4713-01-01 00:00:00+00 BC')$$,
    '22023', 'close_unmatched_orphans: p_as_of must be a finite timestamp between 1970-01-01 00:00:00+00 and 9999-12-31 00:00:00+00, got 4713-01-01 00:00:00+00 BC',
    'close: p_as_of in 4713 BC is 22023, naming the argument and the bound');
SELECT is((SELECT count(*) FROM routing.repair_runs WHERE kind = 'close_unmatched'), 0::bigint,
    'a refused apply records no run');

SELECT (SELECT value FROM routing.integrity_report() WHERE metric = 'orphan_outcomes') AS orphans_before \gset
CREATE TEMP TABLE t_close_dry AS
SELECT * FROM routing.close_unmatched_orphans(p_older_than => '0', p_as_of => now() + interval '1 day');
SELECT is((SELECT count(*) FROM routing.repair_runs WHERE kind = 'close_unmatched'), 0::bigint,
    'the close dry run records no run');
SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'orphan_outcomes'), :'orphans_before'::bigint,
    'and closes nothing');
SELECT ok((SELECT count(*) FROM t_close_dry WHERE action = 'would_close') > 0
          AND (SELECT count(*) FROM t_close_dry WHERE action = 'relink_first')
              = (SELECT count(*) FROM routing.repair_orphans() WHERE action = 'would_relink'),
    'it proposes closing the undecidable orphans and leaves the re-linkable ones to repair_orphans');
CREATE TEMP TABLE t_close AS
SELECT * FROM routing.close_unmatched_orphans(p_older_than => '0', p_apply => true, p_as_of => now() + interval '1 day');
SELECT is((SELECT count(*) FROM t_close WHERE action = 'closed'), (SELECT count(*) FROM t_close_dry WHERE action = 'would_close'),
    'apply closes exactly what the dry run proposed');
SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'orphan_outcomes'),
          (SELECT count(*) FROM t_close WHERE action = 'relink_first'),
    'only the re-linkable orphans are left');
SELECT ok(NOT EXISTS (SELECT FROM t_close c JOIN routing.inferences i ON i.id = c.inference_id
                       WHERE c.action = 'closed' AND (i.outcome_id <> c.outcome_id OR i.status = 'routed')),
    'every closed orphan names an attempt that names it back and is not routed');
SELECT is(routing.rollback_repair((SELECT DISTINCT run_id FROM t_close WHERE action = 'closed')) > 0, true,
    'rollback_repair undoes a close run');
SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'orphan_outcomes'), :'orphans_before'::bigint,
    'the orphans are back as they were');
SELECT is((SELECT count(*) FROM routing.inferences i JOIN t_close c ON c.inference_id = i.id
            WHERE c.action = 'closed' AND i.error_message LIKE 'closed by routing.close_unmatched_orphans%'), 0::bigint,
    'and the closing attempts it inserted are gone');

-- Once validated, rollback refuses: the restored rows would violate the constraint.
SET CONSTRAINTS ALL IMMEDIATE;
DELETE FROM routing.inferences WHERE outcome_id IN (SELECT id FROM routing.orphan_outcomes);
DELETE FROM routing.routing_outcomes WHERE id IN (SELECT id FROM routing.orphan_outcomes);
ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT outcome_requires_inference_when_model_chosen;
SELECT throws_ok(format('SELECT routing.rollback_repair(%s)', (SELECT DISTINCT run_id FROM t_run2)), '55000',
                 format('rollback_repair: cannot roll back repair run %s: constraint outcome_requires_inference_when_model_chosen is validated, and the restored outcomes would violate it',
                        (SELECT DISTINCT run_id FROM t_run2)),
                 'rollback refuses once the constraint is validated (55000) and says why');
SELECT ok((SELECT convalidated FROM pg_constraint WHERE conrelid = 'routing.routing_outcomes'::regclass
            AND conname = 'outcome_requires_inference_when_model_chosen'),
          'the refused rollback left the validated constraint alone');
SELECT is((SELECT rolled_back_at FROM routing.repair_runs WHERE run_id = (SELECT DISTINCT run_id FROM t_run2)),
          NULL, 'and the run unmarked');

SELECT * FROM finish();
ROLLBACK;
