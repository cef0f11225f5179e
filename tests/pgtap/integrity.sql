-- pgTAP: routing_ledger:integrity — integrity_report, its metrics and the views behind them.
BEGIN;
SELECT plan(26);

-- Structure -------------------------------------------------------------------------

SELECT has_function('routing', 'integrity_report', ARRAY['timestamp with time zone'], 'integrity_report(p_as_of) exists');
SELECT function_returns('routing', 'integrity_report', ARRAY['timestamp with time zone'], 'setof record',
                        'integrity_report returns a set of (metric, value)');
SELECT is_definer('routing', 'integrity_report', ARRAY['timestamp with time zone'], 'integrity_report is SECURITY DEFINER');
SELECT ok((SELECT proconfig @> ARRAY['search_path=pg_catalog, routing, pg_temp'] FROM pg_proc
            WHERE oid = 'routing.integrity_report(timestamptz)'::regprocedure),
          'integrity_report pins its search_path');
SELECT has_view('routing', 'orphan_outcomes', 'view orphan_outcomes exists');
SELECT has_view('routing', 'stuck_inferences', 'view stuck_inferences exists');
SELECT has_view('routing', 'link_mismatches', 'view link_mismatches exists');
SELECT function_privs_are('routing', 'integrity_report', ARRAY['timestamp with time zone'], 'routing_ops', ARRAY['EXECUTE'],
                          'routing_ops may run the report');
SELECT function_privs_are('routing', 'integrity_report', ARRAY['timestamp with time zone'], 'routing_app', ARRAY[]::text[],
                          'routing_app may not run the report');
SELECT table_privs_are('routing', 'orphan_outcomes', 'routing_readonly', ARRAY['SELECT'], 'routing_readonly reads orphan_outcomes');
SELECT table_privs_are('routing', 'stuck_inferences', 'routing_readonly', ARRAY['SELECT'], 'routing_readonly reads stuck_inferences');
SELECT table_privs_are('routing', 'stuck_inferences', 'routing_app', ARRAY[]::text[], 'routing_app does not read stuck_inferences');
SELECT results_eq(
    $$SELECT metric FROM routing.integrity_metrics WHERE kind = 'violation' ORDER BY ordinal$$,
    $$VALUES ('orphan_outcomes'), ('orphan_outcomes_24h'), ('stuck_routed_1h'),
             ('terminal_outcome_with_routed_inference'), ('outcomes_without_terminal_state_1h'),
             ('budget_spend_drift'), ('rows_in_default_partition')$$,
    'the contract''s metrics are the violations (and budget_ledger''s drift, and partition upkeep''s)');

-- A ledger with one of each anomaly --------------------------------------------------
-- History as an older write path left it: the CHECK must be off while it is loaded.

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('tap-small', 'tap', 'small', 0.1, 0.3, 0.8, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'tap agent');

ALTER TABLE routing.routing_outcomes DROP CONSTRAINT outcome_requires_inference_when_model_chosen;

INSERT INTO routing.routing_outcomes
       (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug, inference_id,
        outcome_status, cost_actual_usd, judge_status, judge_score, judge_claimed_by, judge_claim_expires_at,
        created_at, completed_at)
SELECT v.id, 'r' || v.id, 'a0000000-0000-4000-8000-000000000001', 'chat', v.rule, v.model, v.inf,
       v.status, v.cost, v.judge, v.score, v.worker, v.expires, now() - v.age,
       CASE WHEN v.status IS NOT NULL THEN now() - v.age + interval '2 seconds' END
  FROM (VALUES
    -- in flight 2 h (attempt stuck), in flight 2 h (retry scheduled later), in flight now
    (201, 'cheapest_clearing_floor', 'tap-small', 101, NULL, NULL::numeric, NULL, NULL::numeric, NULL, NULL::timestamptz, interval '2 hours'),
    (202, 'cheapest_clearing_floor', 'tap-small', 102, NULL, NULL, NULL, NULL, NULL, NULL, interval '2 hours'),
    (203, 'cheapest_clearing_floor', 'tap-small', 103, NULL, NULL, NULL, NULL, NULL, NULL, interval '5 minutes'),
    -- terminal, yet its attempt is routed: linked one way (history), and both ways
    (204, 'cheapest_clearing_floor', 'tap-small', 104, 'failed_rate_limited', NULL, NULL, NULL, NULL, NULL, interval '3 days'),
    (205, 'cheapest_clearing_floor', 'tap-small', 105, 'failed_provider', NULL, NULL, NULL, NULL, NULL, interval '10 minutes'),
    -- judge: queued, claim expired, claim running
    (206, 'cheapest_clearing_floor', 'tap-small', 106, 'succeeded', 0.001, 'unlabeled', NULL, NULL, NULL, interval '1 day'),
    (207, 'cheapest_clearing_floor', 'tap-small', 107, 'succeeded', 0.001, 'claimed', NULL, 'w1', now() - interval '1 minute', interval '1 day'),
    (208, 'cheapest_clearing_floor', 'tap-small', 108, 'succeeded', 0.001, 'claimed', NULL, 'w2', now() + interval '5 minutes', interval '1 day'),
    -- 209 owns attempt 110; 210 points at it too (a direct write), never judged
    (209, 'cheapest_clearing_floor', 'tap-small', 110, 'succeeded', 0.001, 'labeled', 4, NULL, NULL, interval '1 day'),
    (210, 'cheapest_clearing_floor', 'tap-small', 110, 'succeeded', 0.001, NULL, NULL, NULL, NULL, interval '1 day'),
    -- orphans: 3 days old, and 30 minutes old (succeeded, queued, but not judgeable)
    (211, 'cheapest_clearing_floor', 'tap-small', NULL, 'failed_rate_limited', NULL, NULL, NULL, NULL, NULL, interval '3 days'),
    (212, 'cheapest_clearing_floor', 'tap-small', NULL, 'succeeded', 0.001, 'unlabeled', NULL, NULL, NULL, interval '30 minutes'),
    -- legitimate rows with no inference
    (213, 'no_candidate_enrolled', NULL, NULL, 'rejected', NULL, NULL, NULL, NULL, NULL, interval '1 hour'),
    (214, 'failed_pre_dispatch', 'tap-small', NULL, 'failed_pre_dispatch', NULL, NULL, NULL, NULL, NULL, interval '2 hours')
  ) AS v (id, rule, model, inf, status, cost, judge, score, worker, expires, age);

INSERT INTO routing.inferences (id, outcome_id, agent_id, model_slug, status, cost_usd, not_before, created_at, completed_at)
SELECT v.id, v.outcome, 'a0000000-0000-4000-8000-000000000001', 'tap-small', v.status, v.cost, now() + v.not_before,
       now() - v.age, CASE WHEN v.status <> 'routed' THEN now() - v.age + interval '1 second' END
  FROM (VALUES
    (101, 201, 'routed', NULL::numeric, NULL::interval, interval '2 hours'),
    (102, 202, 'routed', NULL, interval '10 minutes', interval '2 hours'),
    (103, 203, 'routed', NULL, NULL, interval '5 minutes'),
    (104, NULL, 'routed', NULL, NULL, interval '3 days'),
    (105, 205, 'routed', NULL, NULL, interval '10 minutes'),
    (106, 206, 'succeeded', 0.001, NULL, interval '1 day'),
    (107, 207, 'succeeded', 0.001, NULL, interval '1 day'),
    (108, 208, 'succeeded', 0.001, NULL, interval '1 day'),
    (109, NULL, 'succeeded', 0.001, NULL, interval '1 day'),
    (110, 209, 'succeeded', 0.001, NULL, interval '1 day')
  ) AS v (id, outcome, status, cost, not_before, age);

SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes ADD CONSTRAINT outcome_requires_inference_when_model_chosen
    CHECK (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL) NOT VALID;

-- Behaviour -------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT metric, value FROM routing.integrity_report()$$,
    $$VALUES ('orphan_outcomes', 2::bigint), ('orphan_outcomes_24h', 1), ('stuck_routed_1h', 2),
             ('terminal_outcome_with_routed_inference', 2), ('outcomes_without_terminal_state_1h', 2),
             ('in_flight', 3), ('routed_inferences', 5), ('unowned_inferences', 2),
             ('unowned_inferences_linked_by_outcome', 1), ('succeeded_not_judgeable', 2),
             ('judge_queue', 1), ('judge_claimed', 2), ('judge_claims_expired', 1),
             -- v0.2 (tests/pgtap/integrity_v02.sql counts them)
             ('streams_interrupted_24h', 0), ('requests_cancelled_24h', 0),
             -- budget_ledger (tests/pgtap/budget_ledger.sql counts it)
             ('budget_spend_drift', 0),
             -- partition upkeep (tests/python/test_partitioned_ledger.py counts it)
             ('rows_in_default_partition', 0),
             -- usage_classes (tests/pgtap/model_prices.sql counts it)
             ('cost_mismatch_24h', 0)$$,
    'every metric counts exactly its anomalies, in the documented order');

SELECT results_eq(
    $$SELECT metric, value FROM routing.integrity_report(now() + interval '1 day')
       WHERE metric IN ('orphan_outcomes_24h', 'stuck_routed_1h', 'outcomes_without_terminal_state_1h', 'judge_claims_expired')$$,
    $$VALUES ('orphan_outcomes_24h', 0::bigint), ('stuck_routed_1h', 5), ('outcomes_without_terminal_state_1h', 3),
             ('judge_claims_expired', 2)$$,
    'the windows end at p_as_of (a day later: the scheduled retry and the fresh attempts are stuck too)');

SELECT results_eq(
    $$SELECT value FROM routing.integrity_report(now() - interval '1 hour') WHERE metric = 'orphan_outcomes_24h'$$,
    $$VALUES (0::bigint)$$,
    'an orphan created after p_as_of is not in its 24 h window');

SELECT results_eq($$SELECT id FROM routing.orphan_outcomes ORDER BY id$$, $$VALUES (211::bigint), (212)$$,
                  'orphan_outcomes lists the dispatched outcomes with no inference, not rejected or failed_pre_dispatch ones');
SELECT results_eq($$SELECT id, outcome_id FROM routing.stuck_inferences ORDER BY id$$,
                  $$VALUES (101::bigint, 201::bigint), (104, NULL)$$,
                  'stuck_inferences lists attempts routed over an hour past due, not a retry scheduled for later');
SELECT ok((SELECT routed_for >= interval '3 days' FROM routing.stuck_inferences WHERE id = 104),
          'stuck_inferences says how long an attempt has been stuck');
SELECT results_eq($$SELECT outcome_id, inference_id, inference_outcome_id FROM routing.link_mismatches$$,
                  $$VALUES (210::bigint, 110::bigint, 209::bigint)$$,
                  'link_mismatches finds an outcome pointing at another outcome''s inference');
SELECT is((SELECT count(*) FROM routing.judge_queue),
          (SELECT value FROM routing.integrity_report() WHERE metric = 'judge_queue'),
          'the judge_queue metric counts the rows of the judge_queue view');
SELECT is((SELECT count(*) FROM routing.integrity_report()), (SELECT count(*) FROM routing.integrity_metrics),
          'the report returns every described metric');
SELECT ok(NOT EXISTS (SELECT FROM routing.integrity_metrics WHERE description = ''), 'every metric is described');

-- Errors ----------------------------------------------------------------------------

SELECT throws_ok($$SELECT * FROM routing.integrity_report(NULL)$$, '22023',
                 'integrity_report: p_as_of must not be NULL', 'a NULL p_as_of is 22023');

-- Read-only: nothing it can write.
SELECT is(provolatile, 's', 'integrity_report is STABLE (read-only)')
  FROM pg_proc WHERE oid = 'routing.integrity_report(timestamptz)'::regprocedure;

-- A healthy ledger reads all zeros for the violations.
SET CONSTRAINTS ALL DEFERRED;
DELETE FROM routing.inferences;
DELETE FROM routing.routing_outcomes;
SELECT is((SELECT sum(r.value) FROM routing.integrity_report() r
             JOIN routing.integrity_metrics m USING (metric) WHERE m.kind = 'violation'),
          0::numeric, 'an empty ledger has no violation');

SELECT * FROM finish();
ROLLBACK;
