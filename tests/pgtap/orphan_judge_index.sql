-- pgTAP for orphan_judge_index and the report's flat-in-history queries: the covering
-- partial index of the orphans (same predicate as routing_outcomes_orphans, the one
-- definition of an orphan on the index side), the orphans' judge counts answered
-- index-only from it, and the counts it corrects (succeeded_not_judgeable, judge_queue)
-- with orphans in every judge state; terminal_outcome_with_routed_inference looks the
-- outcome up by key.
BEGIN;
SELECT plan(9);

\ir helpers/plan_of.sql
\ir helpers/metric.sql

SELECT has_index('routing', 'routing_outcomes', 'routing_outcomes_orphans_judge',
    ARRAY['judge_status', 'outcome_status'], 'the orphans'' judge index exists');
SELECT is(
    (SELECT pg_get_expr(x.indpred, x.indrelid) FROM pg_index x
      WHERE x.indexrelid = 'routing.routing_outcomes_orphans_judge'::regclass),
    (SELECT pg_get_expr(x.indpred, x.indrelid) FROM pg_index x
      WHERE x.indexrelid = 'routing.routing_outcomes_orphans'::regclass),
    'it holds exactly the orphans: the predicate of routing_outcomes_orphans');

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('oj-model', 'tap', 'oj', 1, 2, 0.9, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000000d1', 'f0000000-0000-4000-8000-0000000000d1', 'orphan judge');

-- Orphans of an older write path in each judge state, rejected and refused outcomes
-- (no inference, not orphans), and a queue of ordinary outcomes written by the functions.
ALTER TABLE routing.routing_outcomes DROP CONSTRAINT outcome_requires_inference_when_model_chosen;
INSERT INTO routing.routing_outcomes
       (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug, outcome_status,
        cost_actual_usd, judge_status, judge_score, created_at, completed_at)
SELECT v.id, 'oj' || v.id, 'a0000000-0000-4000-8000-0000000000d1', 'chat', v.rule, v.model, v.status,
       v.cost, v.judge, v.score, now() - interval '2 days', now() - interval '2 days'
  FROM (VALUES
    (901, 'cheapest_clearing_floor', 'oj-model', 'succeeded', 0.001, 'unlabeled', NULL::numeric),
    (902, 'cheapest_clearing_floor', 'oj-model', 'succeeded', 0.001, 'labeled', 4),
    (903, 'cheapest_clearing_floor', 'oj-model', 'succeeded', 0.001, NULL, NULL),
    (904, 'cheapest_clearing_floor', 'oj-model', 'failed_provider', NULL, NULL, NULL),
    (905, 'no_candidate_enrolled', NULL, 'rejected', NULL, NULL, NULL),
    (906, 'failed_pre_dispatch', 'oj-model', 'failed_pre_dispatch', NULL, NULL, NULL)
  ) AS v (id, rule, model, status, cost, judge, score);
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes ADD CONSTRAINT outcome_requires_inference_when_model_chosen
    CHECK (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL) NOT VALID;
SET CONSTRAINTS ALL DEFERRED;

SELECT count(*) FROM generate_series(1, 3) g,
       routing.insert_decision('oj-q' || g, 'a0000000-0000-4000-8000-0000000000d1', 'chat', 10, 10) d,
       routing.complete_decision(d.inference_id, '{}', 10, 10, 5) c;

SELECT is((SELECT array_agg(id ORDER BY id) FROM routing.orphan_outcomes), ARRAY[901, 902, 903, 904]::bigint[],
    'the four orphans, not the rejected or refused outcomes');
SELECT is(pg_temp.metric('orphan_outcomes', now()), 4::bigint, 'orphan_outcomes counts them');
SELECT is(pg_temp.metric('judge_queue', now()), 3::bigint,
    'judge_queue: the three queued outcomes, not the unlabeled orphan (it has nothing to judge)');
SELECT is(pg_temp.metric('judge_queue', now()), (SELECT count(*) FROM routing.judge_queue),
    'judge_queue counts the rows of the view');
SELECT is(pg_temp.metric('succeeded_not_judgeable', now()), 3::bigint,
    'succeeded_not_judgeable: the never-labelled orphan and the two that were given a judge status');

-- The plans (seq scans off: on a ledger of a dozen rows any plan is cheap; on a big one
-- this is the plan that does not grow with history).
SET LOCAL enable_seqscan = off;
-- Nor a bitmap scan: in the all-files run the files before this one leave dead tuples behind
-- (each rolls back), so the visibility map is not all-visible and a bitmap scan looks cheaper
-- on a dozen rows; what is checked is that the index alone can answer.
SET LOCAL enable_bitmapscan = off;
SELECT alike(
    pg_temp.plan_of($$SELECT count(*) FILTER (WHERE o.outcome_status = 'succeeded' AND o.judge_status IS NOT NULL),
                             count(*) FILTER (WHERE o.judge_status = 'unlabeled')
                        FROM routing.routing_outcomes o
                       WHERE o.inference_id IS NULL AND o.chosen_model_slug IS NOT NULL
                         AND o.decision_rule <> 'failed_pre_dispatch'$$),
    '%Index Only Scan using routing_outcomes_orphans_judge%',
    'the orphans'' judge counts are index-only on routing_outcomes_orphans_judge');
SELECT alike(
    pg_temp.plan_of($$SELECT count(*) FROM routing.inferences i
                       WHERE i.status = 'routed'
                         AND (SELECT o.outcome_status FROM routing.routing_outcomes o
                               WHERE o.id = i.outcome_id) IS NOT NULL$$),
    '%SubPlan%routing_outcomes_pkey%',
    'terminal_outcome_with_routed_inference: one key look-up per routed attempt');

SELECT * FROM finish();
ROLLBACK;
