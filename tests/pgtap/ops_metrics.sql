-- pgTAP for the ops_metrics change: routing.ops_metrics and routing.describe_metrics.
BEGIN;
SELECT plan(22);

------------------------------------------------------------------------- structure

SELECT has_function('routing', 'ops_metrics', ARRAY['interval', 'timestamp with time zone'], 'ops_metrics(p_window, p_as_of) exists');
SELECT has_function('routing', 'describe_metrics', ARRAY[]::text[], 'describe_metrics() exists');
SELECT is_definer('routing', 'ops_metrics', ARRAY['interval', 'timestamp with time zone'], 'ops_metrics is SECURITY DEFINER');
SELECT ok((SELECT proconfig @> ARRAY['search_path=pg_catalog, routing, pg_temp'] FROM pg_proc
            WHERE oid = 'routing.ops_metrics(interval,timestamptz)'::regprocedure), 'ops_metrics pins its search_path');
SELECT results_eq(
    $$SELECT r.rolname::text COLLATE "default" FROM pg_catalog.pg_roles r
       WHERE r.rolname IN ('routing_app', 'routing_judge', 'routing_ops', 'routing_readonly', 'public')
         AND has_function_privilege(r.oid, 'routing.ops_metrics(interval,timestamptz)', 'EXECUTE')
       ORDER BY 1$$,
    $$VALUES ('routing_ops'), ('routing_readonly')$$,
    'routing_ops and routing_readonly may read the metrics, no other role');
SELECT function_privs_are('routing', 'describe_metrics', ARRAY[]::text[], 'routing_readonly', ARRAY['EXECUTE'],
                          'routing_readonly may read the descriptions');
SELECT function_privs_are('routing', 'describe_metrics', ARRAY[]::text[], 'routing_app', ARRAY[]::text[],
                          'routing_app may not');

-- The descriptions are the database's own lists.
SELECT set_eq(
    $$SELECT metric, kind FROM routing.describe_metrics() WHERE source = 'integrity_report'$$,
    $$SELECT metric, kind FROM routing.integrity_metrics$$,
    'every integrity metric is described with its kind');
SELECT set_eq(
    $$SELECT metric FROM routing.describe_metrics() WHERE source = 'ops_metrics'$$,
    $$SELECT metric FROM routing.ops_metric_families$$,
    'every ops metric family is described');
SELECT is_empty(
    $$SELECT DISTINCT m.metric FROM routing.ops_metrics() m
       WHERE m.metric NOT IN (SELECT metric FROM routing.describe_metrics() WHERE source = 'ops_metrics')$$,
    'ops_metrics returns only described families');

SELECT throws_ok($$SELECT * FROM routing.ops_metrics('0 seconds')$$, '22023', NULL, 'an empty window is refused');
SELECT throws_ok($$SELECT * FROM routing.ops_metrics('2 days')$$, '22023', NULL, 'a window over a day is refused');
SELECT throws_ok($$SELECT * FROM routing.ops_metrics('5 minutes', NULL)$$, '22023', NULL, 'a NULL p_as_of is refused');

------------------------------------------------------------------------- behaviour

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('tap-small', 'tap', 'small', 0.1, 0.3, 0.8, true),
       ('tap-large', 'tap', 'large', 1.0, 3.0, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'tap agent');

-- Two succeed at once, one after a failover, two stay in flight streaming.
CREATE TEMP TABLE t_req AS
SELECT g AS n, d.outcome_id, d.inference_id
  FROM generate_series(1, 5) g,
       routing.insert_decision('metrics-' || g, 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
SELECT count(*) FROM t_req, routing.complete_decision(t_req.inference_id, '{"a": 1}', 100, 20, 500) WHERE t_req.n <= 2;
UPDATE t_req SET inference_id = f.next_inference_id
  FROM routing.fail_inference((SELECT inference_id FROM t_req WHERE n = 3), 'server_error', 'HTTP 503') f
 WHERE n = 3;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_req WHERE n = 3), '{"a": 3}', 100, 20, 500);
SELECT count(*) FROM t_req, routing.mark_first_token(t_req.inference_id, CASE t_req.n WHEN 4 THEN 250 ELSE 750 END)
 WHERE t_req.n >= 4;
INSERT INTO routing.model_cooldowns (model_slug, cooling_until) VALUES ('tap-large', now() + interval '30 seconds');

CREATE TEMP TABLE t_m AS SELECT * FROM routing.ops_metrics('5 minutes', now());

SELECT results_eq(
    $$SELECT labels->>'status', labels->>'model', value FROM t_m WHERE metric = 'outcomes_recent' ORDER BY 1, 2$$,
    $$VALUES ('in_flight'::text, 'tap-small'::text, 2::float8), ('succeeded', 'tap-small', 3)$$,
    'outcomes in the window by status and chosen model');
SELECT results_eq(
    $$SELECT labels->>'attempts', value FROM t_m WHERE metric = 'outcomes_by_attempts_recent' ORDER BY 1$$,
    $$VALUES ('1'::text, 4::float8), ('2', 1)$$,
    'outcomes in the window by their number of attempts');
SELECT is((SELECT value FROM t_m WHERE metric = 'attempts_per_outcome_recent'), 1.2::float8, 'mean attempts per outcome');
SELECT results_eq(
    $$SELECT labels->>'model', labels->>'quantile', round(value::numeric, 3) FROM t_m WHERE metric = 'ttft_recent' ORDER BY 2$$,
    $$VALUES ('tap-small'::text, '0.5'::text, 0.500), ('tap-small', '0.95', 0.725)$$,
    'time to first token of the streamed attempts, p50 and p95 by model, in seconds');
SELECT is((SELECT value FROM t_m WHERE metric = 'cooldowns_in_force'), 1::float8, 'one cooldown in force');
SELECT is((SELECT round(value) FROM t_m WHERE metric = 'cooldown_remaining' AND labels->>'model' = 'tap-large'), 30::float8,
          'its time left, by model');
SELECT is((SELECT value FROM t_m WHERE metric = 'integrity' AND labels = '{"metric": "in_flight", "kind": "info"}'), 2::float8,
          'the integrity report is in the scrape, labelled with metric and kind');

-- Completions are stamped clock_timestamp(), after this transaction's now(): on a busy
-- machine, by more than a second. The age is 600 s less that time at most.
SELECT ok((SELECT value BETWEEN 599 - extract(epoch FROM clock_timestamp() - now()) AND 601
             FROM routing.ops_metrics('5 minutes', now() + interval '10 minutes')
            WHERE metric = 'judge_oldest_waiting_age'),
          'ten minutes later the oldest waiting outcome is ten minutes old');
SELECT is_empty(
    $$SELECT * FROM routing.ops_metrics('5 minutes', now() + interval '10 minutes')
       WHERE metric IN ('outcomes_recent', 'outcomes_by_attempts_recent', 'attempts_per_outcome_recent', 'cooldown_remaining',
                        'ttft_recent')$$,
    'outside the window nothing is counted, and the cooldown is over');

SELECT * FROM finish();
ROLLBACK;
