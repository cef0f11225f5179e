-- pgTAP for the outcome_stream_index change: the partial index
-- routing_outcomes_stream_endings of the outcomes that ended failed_stream_interrupted or
-- cancelled, by (outcome_status, completed_at); valid (the CONCURRENTLY build finished),
-- holding only those endings, and the plan of the two integrity_report counts it was
-- built for (streams_interrupted_24h, requests_cancelled_24h). The deploy builds it
-- CONCURRENTLY, which cannot run inside a transaction block: its re-run path (an INVALID
-- index dropped and rebuilt) cannot be exercised here; test_migrations covers the deploy.
BEGIN;
SELECT plan(13);

\ir helpers/plan_of.sql
\ir helpers/metric.sql

----------------------------------------------------------------------------- structure

SELECT has_index('routing', 'routing_outcomes', 'routing_outcomes_stream_endings',
    ARRAY['outcome_status', 'completed_at'], 'routing_outcomes_stream_endings on (outcome_status, completed_at)');
SELECT index_is_type('routing', 'routing_outcomes', 'routing_outcomes_stream_endings', 'btree', 'it is a btree');
SELECT ok(NOT (SELECT x.indisunique FROM pg_catalog.pg_index x
                WHERE x.indexrelid = 'routing.routing_outcomes_stream_endings'::regclass), 'it is not unique');
SELECT is(
    (SELECT pg_get_expr(x.indpred, x.indrelid) FROM pg_catalog.pg_index x
      WHERE x.indexrelid = 'routing.routing_outcomes_stream_endings'::regclass),
    '(outcome_status = ANY (ARRAY[''failed_stream_interrupted''::text, ''cancelled''::text]))',
    'it is partial: exactly the outcomes that ended failed_stream_interrupted or cancelled');
SELECT results_eq(
    $$SELECT x.indisvalid, x.indisready, x.indislive FROM pg_catalog.pg_index x
       WHERE x.indexrelid = 'routing.routing_outcomes_stream_endings'::regclass$$,
    $$VALUES (true, true, true)$$,
    'the concurrent build finished: the index is valid, ready and live');
SELECT is(
    (SELECT count(*)::int FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
      WHERE x.indrelid = 'routing.routing_outcomes'::regclass AND c.relname LIKE 'routing_outcomes_stream_endings%'),
    1, 'one index of that name, no leftover of a failed build beside it');

----------------------------------------------------------------------------- behaviour

-- Through the write path: two streams broken after their first token, one cancelled,
-- one succeeded. Their completed_at is clock_timestamp(), after this transaction's now().
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('osi_model', 'tap', 'osi', 1, 2, 0.9, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000005e1', 'f0000000-0000-4000-8000-0000000005e1', 'stream endings');
CREATE TEMP TABLE t_d AS
SELECT g AS n, d.outcome_id, d.inference_id
  FROM generate_series(1, 4) g,
       routing.insert_decision('osi-' || g, 'a0000000-0000-4000-8000-0000000005e1', 'chat', 100, 100, '{}', true) d;
SELECT count(*) FROM t_d t, routing.mark_first_token(t.inference_id, 50) f WHERE t.n IN (1, 4);
SELECT count(*) FROM t_d t, routing.fail_inference(t.inference_id, 'stream_interrupted', 'cut', NULL, NULL, 10) f
 WHERE t.n IN (1, 4);
SELECT count(*) FROM routing.fail_inference((SELECT inference_id FROM t_d WHERE n = 2), 'cancelled', 'stopped');
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_d WHERE n = 3), '{}', 100, 10, 5);

SELECT results_eq(
    $$SELECT t.n, o.outcome_status FROM t_d t JOIN routing.routing_outcomes o ON o.id = t.outcome_id ORDER BY t.n$$,
    $$VALUES (1, 'failed_stream_interrupted'), (2, 'cancelled'), (3, 'succeeded'), (4, 'failed_stream_interrupted')$$,
    'fixture: two broken streams, one cancellation, one success');
SELECT is(pg_temp.metric('streams_interrupted_24h', clock_timestamp()), 2::bigint,
    'streams_interrupted_24h: the two broken streams');
SELECT is(pg_temp.metric('requests_cancelled_24h', clock_timestamp()), 1::bigint, 'requests_cancelled_24h: the cancellation');
SELECT results_eq(
    $$SELECT pg_temp.metric('streams_interrupted_24h', now() - interval '1 minute'),
             pg_temp.metric('streams_interrupted_24h', clock_timestamp() + interval '25 hours')$$,
    $$VALUES (0::bigint, 0::bigint)$$,
    'the window is the 24 hours before p_as_of: nothing before they ended, nothing 25 hours later');

-- The plans: seq scans off, since on a ledger of four rows any plan is cheap; on a big
-- one this is the plan that reads a few pages.
SET LOCAL enable_seqscan = off;
SELECT alike(
    pg_temp.plan_of($$SELECT count(*) FROM routing.routing_outcomes o
                       WHERE o.outcome_status = 'failed_stream_interrupted'
                         AND o.completed_at > now() - interval '24 hours' AND o.completed_at <= now()$$),
    '%routing_outcomes_stream_endings%Index Cond: ((outcome_status = ''failed_stream_interrupted''::text) AND (completed_at > %',
    'streams_interrupted_24h''s count is answered by the index, status and time window both in the index condition');
SELECT alike(
    pg_temp.plan_of($$SELECT count(*) FROM routing.routing_outcomes o
                       WHERE o.outcome_status = 'cancelled'
                         AND o.completed_at > now() - interval '24 hours' AND o.completed_at <= now()$$),
    '%routing_outcomes_stream_endings%Index Cond: ((outcome_status = ''cancelled''::text) AND (completed_at > %',
    'requests_cancelled_24h''s count is answered by the index');
SELECT unalike(
    pg_temp.plan_of($$SELECT count(*) FROM routing.routing_outcomes o
                       WHERE o.outcome_status = 'succeeded'
                         AND o.completed_at > now() - interval '24 hours'$$),
    '%routing_outcomes_stream_endings%',
    'a status the index does not hold cannot use it (it is partial)');
RESET enable_seqscan;

SELECT * FROM finish();
ROLLBACK;
