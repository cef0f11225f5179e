-- pgTAP for the reworked integrity report: the info metrics streams_interrupted_24h and
-- requests_cancelled_24h (registered in integrity_metrics, windows ending at p_as_of,
-- answered by the partial index routing_outcomes_stream_endings), and the bound on
-- p_as_of.
BEGIN;
SELECT plan(14);

\ir helpers/error_of.sql
\ir helpers/plan_of.sql
\ir helpers/metric.sql

SELECT results_eq(
    $$SELECT metric, kind FROM routing.integrity_metrics
       WHERE metric IN ('streams_interrupted_24h', 'requests_cancelled_24h') ORDER BY ordinal$$,
    $$VALUES ('streams_interrupted_24h', 'info'), ('requests_cancelled_24h', 'info')$$,
    'the two metrics are registered, as info');
SELECT is(
    (SELECT array_agg(metric ORDER BY ordinal) FROM routing.integrity_metrics),
    (SELECT array_agg(metric) FROM routing.integrity_report()),
    'integrity_report returns every registered metric, in ordinal order');
SELECT has_index('routing', 'routing_outcomes', 'routing_outcomes_stream_endings',
    ARRAY['outcome_status', 'completed_at'], 'the partial index of stream endings exists');

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('ir-model', 'tap', 'ir', 1, 2, 0.9, true),
       ('ir-other', 'tap', 'ir2', 2, 2, 0.9, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000000c1', 'f0000000-0000-4000-8000-0000000000c1', 'report');

-- 1, 2: interrupted after the first token; 3: cancelled mid-stream; 4: cancelled before
-- it; 5: interrupted two days ago (outside the window); 6: succeeded.
CREATE TEMP TABLE t_r (n int PRIMARY KEY, outcome_id bigint, inference_id bigint);
INSERT INTO t_r
SELECT g, d.outcome_id, d.inference_id
  FROM generate_series(1, 6) g,
       routing.insert_decision('ir-' || g, 'a0000000-0000-4000-8000-0000000000c1', 'chat', 100, 50, '{}', true) d;
SELECT count(*) FROM t_r t, routing.mark_first_token(t.inference_id, 10) f WHERE t.n IN (1, 2, 3, 5);
SELECT count(*) FROM t_r t,
       routing.fail_inference(t.inference_id,
                              CASE WHEN t.n IN (3, 4) THEN 'cancelled' ELSE 'stream_interrupted' END,
                              'test', NULL, NULL, 5) f
 WHERE t.n <= 5;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_r WHERE n = 6), '{}', 100, 50, 10);
-- Moving a terminal outcome back in time is history, which the guard refuses to a writer.
SET LOCAL session_replication_role = replica;
UPDATE routing.routing_outcomes SET completed_at = now() - interval '2 days', created_at = now() - interval '2 days'
 WHERE id = (SELECT outcome_id FROM t_r WHERE n = 5);
SET LOCAL session_replication_role = origin;

SELECT is(pg_temp.metric('streams_interrupted_24h'), 2::bigint, 'streams_interrupted_24h counts the two of the last day');
SELECT is(pg_temp.metric('requests_cancelled_24h'), 2::bigint, 'requests_cancelled_24h counts both cancellations, before and after the first token');
SELECT is(pg_temp.metric('streams_interrupted_24h', now() - interval '1 day 1 hour'), 1::bigint,
    'the window ends at p_as_of: a day earlier, only the old interruption');
SELECT is(pg_temp.metric('requests_cancelled_24h', now() - interval '1 second'), 0::bigint,
    'an ending after p_as_of is not in its window');
SELECT is(
    (SELECT count(*)::int FROM routing.integrity_report() r JOIN routing.integrity_metrics m USING (metric)
      WHERE m.kind = 'violation' AND r.value <> 0), 0,
    'interrupted and cancelled requests are endings, not violations');

SET LOCAL enable_seqscan = off;
SELECT alike(
    pg_temp.plan_of($$SELECT count(*) FROM routing.routing_outcomes o
                      WHERE o.outcome_status = 'cancelled'
                        AND o.completed_at > now() - interval '24 hours' AND o.completed_at <= now()$$),
    '%routing_outcomes_stream_endings%', 'the count is answered by routing_outcomes_stream_endings');
RESET enable_seqscan;

SELECT alike(pg_temp.error_of($$SELECT * FROM routing.integrity_report('infinity')$$),
    '22023: integrity_report: p_as_of%', 'p_as_of infinity: 22023');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.integrity_report('4713-01-01 BC')$$),
    '22023: integrity_report: p_as_of%', 'p_as_of at the type''s start: 22023, not 22008');
SELECT is(pg_temp.error_of($$SELECT * FROM routing.integrity_report('1970-01-01 00:00:00+00')$$),
    'no error', 'the earliest p_as_of works');
SELECT throws_ok($$SELECT * FROM routing.integrity_report(NULL)$$, '22023',
    'integrity_report: p_as_of must not be NULL', 'a NULL p_as_of: 22023, v0.1''s message');
SELECT is_empty(
    $$SELECT m.metric FROM routing.integrity_report() r RIGHT JOIN routing.integrity_metrics m USING (metric)
       WHERE r.metric IS NULL$$,
    'no registered metric is missing from the report');

SELECT * FROM finish();
ROLLBACK;
