-- pgTAP for the reworked reaper: age counts from the latest of created_at, not_before
-- and heartbeat_at (a heartbeating stream survives a short threshold, a silent one is
-- reaped), on the index inferences_routed_age; a reaped partial keeps its estimated
-- cost; bounds on p_older_than and p_as_of (no 22008 at the extremes). "Now" is passed
-- in (p_as_of) or rows are aged by hand: nothing sleeps.
BEGIN;
SELECT plan(23);

\ir helpers/error_of.sql
\ir helpers/plan_of.sql

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('hb-model', 'tap', 'hb', 1, 2, 0.9, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000000b1', 'f0000000-0000-4000-8000-0000000000b1', 'heartbeats');

-- Four streams, all created 3 hours ago:
-- 1 heartbeats now (alive); 2 last heartbeat 2 hours ago (went silent);
-- 3 never heartbeat; 4 heartbeats now but is also a scheduled retry due in an hour.
CREATE TEMP TABLE t_s (n int PRIMARY KEY, outcome_id bigint, inference_id bigint);
INSERT INTO t_s
SELECT g, d.outcome_id, d.inference_id
  FROM generate_series(1, 4) g,
       routing.insert_decision('hb-' || g, 'a0000000-0000-4000-8000-0000000000b1', 'chat', 1000, 500, '{}', true) d;
UPDATE routing.inferences i SET created_at = now() - interval '3 hours'
  FROM t_s t WHERE i.id = t.inference_id;
UPDATE routing.routing_outcomes o SET created_at = now() - interval '3 hours'
  FROM t_s t WHERE o.id = t.outcome_id;
SELECT count(*) FROM t_s t, routing.mark_first_token(t.inference_id, 50) f WHERE t.n IN (1, 2);
SELECT bool_and(routing.heartbeat_inference(t.inference_id, 10 * t.n)) FROM t_s t WHERE t.n IN (1, 2, 4);
UPDATE routing.inferences SET heartbeat_at = now() - interval '2 hours'
 WHERE id = (SELECT inference_id FROM t_s WHERE n = 2);
UPDATE routing.inferences SET not_before = now() + interval '1 hour'
 WHERE id = (SELECT inference_id FROM t_s WHERE n = 4);

SELECT is(
    (SELECT count(*)::int FROM routing.integrity_report() r WHERE r.metric = 'stuck_routed_1h' AND r.value = 2),
    1, 'stuck_routed_1h counts the silent streams only (2 and 3), not the heartbeating one nor the scheduled one');
SELECT results_eq($$SELECT id FROM routing.stuck_inferences ORDER BY id$$,
    $$SELECT inference_id FROM t_s WHERE n IN (2, 3) ORDER BY inference_id$$,
    'the view stuck_inferences lists the same two');
SELECT ok((SELECT due_at = heartbeat_at FROM routing.stuck_inferences
            WHERE id = (SELECT inference_id FROM t_s WHERE n = 2)),
    'due_at is the last heartbeat when it is the latest');

SELECT is(routing.reap_stuck_inferences('5 minutes'), 2::bigint,
    'a 5-minute threshold reaps the two silent streams, not the one that heartbeats');
SELECT results_eq($$SELECT t.n, i.status FROM t_s t JOIN routing.inferences i ON i.id = t.inference_id ORDER BY t.n$$,
    $$VALUES (1, 'routed'), (2, 'failed'), (3, 'failed'), (4, 'routed')$$,
    'streams 1 (heartbeating) and 4 (heartbeating, scheduled) stay routed');
-- Stream 2 reported 20 output tokens by heartbeat: 1000 * 1 / 1e6 + 20 * 2 / 1e6.
SELECT results_eq(
    $$SELECT i.error_code, i.output_tokens, i.usage_source, i.cost_usd, o.outcome_status, o.cost_actual_usd
        FROM t_s t JOIN routing.inferences i ON i.id = t.inference_id JOIN routing.routing_outcomes o ON o.id = t.outcome_id
       WHERE t.n = 2$$,
    $$VALUES ('abandoned', 20, 'estimated', 0.001040, 'failed_abandoned', 0.001040)$$,
    'a reaped stream keeps its heartbeat count and its estimated partial cost, on attempt and outcome');
SELECT results_eq(
    $$SELECT i.output_tokens, i.usage_source, i.cost_usd FROM t_s t JOIN routing.inferences i ON i.id = t.inference_id WHERE t.n = 3$$,
    $$VALUES (NULL::int, NULL::text, NULL::numeric)$$,
    'a reaped attempt whose output is unknown has no cost (NULL, never 0)');
SELECT ok((SELECT error_message LIKE '%last heard of%' FROM routing.inferences WHERE id = (SELECT inference_id FROM t_s WHERE n = 2)),
    'the reason says when the stream was last heard of');
SELECT ok((SELECT error_message LIKE '%after it was due%' FROM routing.inferences WHERE id = (SELECT inference_id FROM t_s WHERE n = 3)),
    'an attempt that never heartbeat is reaped as due');
SELECT is(routing.heartbeat_inference((SELECT inference_id FROM t_s WHERE n = 2), 30), false,
    'the reaped stream''s next heartbeat answers false: stop');
SELECT is((SELECT judge_status FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_s WHERE n = 2)), NULL,
    'a reaped stream is never judged');

-- An hour and six minutes later, with nothing heard: both remaining streams go.
SELECT is(routing.reap_stuck_inferences('5 minutes', now() + interval '66 minutes'), 2::bigint,
    'once a stream stops heartbeating it is reaped after the threshold (p_as_of later, no sleep)');

------------------------------------------------------------------------- index-backed

SET LOCAL enable_seqscan = off;
SELECT alike(
    pg_temp.plan_of($$SELECT i.id FROM routing.inferences i
                      WHERE i.status = 'routed'
                        AND routing._routed_past_due(i.created_at, i.not_before, i.heartbeat_at, now())
                      ORDER BY greatest(i.created_at, i.not_before), i.id LIMIT 1000$$),
    -- An index scan or a bitmap scan (the choice depends on what else the database holds).
    '%inferences_routed_age%Index Cond: (GREATEST(created_at, not_before) < now())%',
    'the reaper''s predicate is inlined and answered by the index inferences_routed_age (heartbeat_at a filter)');
RESET enable_seqscan;
SELECT is_empty(
    $$SELECT indexrelid::regclass::text FROM pg_index x
       WHERE x.indrelid = 'routing.inferences'::regclass
         AND pg_get_indexdef(x.indexrelid) LIKE '%heartbeat_at%'$$,
    'no index on inferences mentions heartbeat_at: a heartbeat changes no indexed column (HOT-able)');

-- And it is one: the heartbeats of a fresh stream (on a page with room) are HOT updates,
-- counted for this transaction by pg_stat_xact_user_tables.
INSERT INTO t_s SELECT 9, d.outcome_id, d.inference_id
  FROM routing.insert_decision('hb-9', 'a0000000-0000-4000-8000-0000000000b1', 'chat', 1000, 500, '{}', true) d;
CREATE TEMP TABLE hot_before AS
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relid = 'routing.inferences'::regclass;
SELECT bool_and(h) FROM generate_series(1, 5) g, routing.heartbeat_inference((SELECT inference_id FROM t_s WHERE n = 9), g) h;
SELECT results_eq(
    $$SELECT s.n_tup_upd - b.n_tup_upd, s.n_tup_hot_upd - b.n_tup_hot_upd
        FROM pg_stat_xact_user_tables s, hot_before b WHERE s.relid = 'routing.inferences'::regclass$$,
    $$VALUES (5::bigint, 5::bigint)$$,
    'five heartbeats: five updates, all HOT (no index entry written)');

--------------------------------------------------------------------------------- bounds

SELECT alike(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('178000000 years')$$),
    '22023: reap_stuck_inferences: p_older_than must be an interval of at most 100 years%',
    'an interval near the type''s limit: 22023, not 22008');
SELECT alike(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('1 hour', '-infinity')$$),
    '22023: %p_as_of%', 'p_as_of -infinity: 22023');
SELECT alike(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('1 hour', 'infinity')$$),
    '22023: %p_as_of%', 'p_as_of infinity: 22023');
SELECT alike(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('100 years', '4713-01-01 BC')$$),
    '22023: %p_as_of%', 'p_as_of at the type''s start: 22023, not 22008 from p_as_of - p_older_than');
SELECT is(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('100 years', '1970-01-01 00:00:00+00')$$),
    'no error', 'the extremes of both bounds together compute a cutoff');
SELECT is(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('0', '9999-12-31 00:00:00+00')$$),
    'no error', 'a zero threshold at the latest p_as_of is accepted');
SELECT is(routing.reap_stuck_inferences('1 hour'), 0::bigint, 'nothing else to reap');
SELECT alike(pg_temp.error_of($$SELECT routing.reap_stuck_inferences('-1 second')$$),
    '22023: reap_stuck_inferences: p_older_than must be a non-negative interval%', 'a negative threshold: 22023 (v0.1''s message)');

SELECT * FROM finish();
ROLLBACK;
