-- pgTAP for the budget_ledger change: the running daily spend reserved by
-- insert_decision, settled by the trigger on every write of an outcome (completion,
-- give-up, retry and failover, the reaper, a delete), the budget day in its time zone,
-- and the drift metric. The cap under concurrent connections is
-- tests/python/test_budget_race.py (one transaction cannot race itself).
BEGIN;
SELECT plan(46);

-- Fixture. For 1000 input / 500 max tokens: b_cheap projects 0.002, b_mid 0.0035.
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('b_cheap', 'p1', 'cheap-1', 1, 2, 0.80, true),
       ('b_mid',   'p2', 'mid-1',   2, 3, 0.80, true);
INSERT INTO routing.agents (id, tenant_id, name, per_call_cap_usd, daily_cap_usd) VALUES
    ('00000000-0000-4000-8000-0000000b0001', '00000000-0000-4000-8000-0000000b0000', 'capped',   NULL, 0.0055),
    ('00000000-0000-4000-8000-0000000b0002', '00000000-0000-4000-8000-0000000b0000', 'uncapped', NULL, NULL),
    ('00000000-0000-4000-8000-0000000b0003', '00000000-0000-4000-8000-0000000b0000', 'late_cap', NULL, NULL);
\set capped '''00000000-0000-4000-8000-0000000b0001'''
\set uncapped '''00000000-0000-4000-8000-0000000b0002'''
\set late_cap '''00000000-0000-4000-8000-0000000b0003'''

CREATE FUNCTION pg_temp.spent(p_agent uuid) RETURNS numeric LANGUAGE sql AS $$
    SELECT b.spent_usd FROM routing.budget_spend b
     WHERE b.agent_id = p_agent AND b.spend_day = routing._spend_day(now())
$$;
CREATE FUNCTION pg_temp.drift() RETURNS bigint LANGUAGE sql AS $$
    SELECT r.value FROM routing.integrity_report() r WHERE r.metric = 'budget_spend_drift'
$$;

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'budget_spend', 'routing.budget_spend exists');
SELECT col_is_pk('routing', 'budget_spend', ARRAY['agent_id', 'spend_day'], 'keyed by (agent_id, spend_day)');
SELECT has_trigger('routing', 'routing_outcomes', 'settle_budget', 'outcome updates settle the spend');
SELECT has_trigger('routing', 'routing_outcomes', 'settle_budget_delete', 'outcome deletes settle the spend');
SELECT ok(NOT has_function_privilege('routing_app', 'routing._reserve_budget(uuid, numeric, numeric, timestamptz)', 'EXECUTE'),
          '_reserve_budget is private');
SELECT is((SELECT kind FROM routing.integrity_metrics WHERE metric = 'budget_spend_drift'), 'violation',
          'budget_spend_drift is a violation metric');
SELECT is(pg_temp.drift(), 0::bigint, 'no drift on an empty ledger');

------------------------------------------------------------------- reservation, settlement

SELECT * FROM routing.insert_decision('b-1', :capped, 'chat', 1000, 500) \gset d1_
SELECT is(:'d1_model_slug'::text, 'b_cheap', 'the capped agent is dispatched');
SELECT is(pg_temp.spent(:capped), 0.002, 'the decision reserved its projected cost');

SELECT * FROM routing.insert_decision('b-2', :capped, 'chat', 1000, 500) \gset d2_
SELECT is(pg_temp.spent(:capped), 0.004, 'a second decision reserves on the same row');
SELECT is(pg_temp.drift(), 0::bigint, 'the reservations match the ledger');

-- 0.004 + 0.002 > 0.0055: refused before dispatch, with the spend that left no room.
SELECT * FROM routing.insert_decision('b-3', :capped, 'chat', 1000, 500) \gset d3_
SELECT is(:'d3_outcome_status'::text, 'failed_pre_dispatch', 'over the cap: refused before dispatch');
SELECT is((SELECT explanation -> 'refusal' ->> 'reason' FROM routing.routing_outcomes WHERE id = :d3_outcome_id),
          'daily_cap_exceeded', '... as daily_cap_exceeded');
SELECT is((SELECT (explanation -> 'refusal' ->> 'spent_today_usd')::numeric FROM routing.routing_outcomes WHERE id = :d3_outcome_id),
          0.004, '... naming the spend so far');
SELECT is(pg_temp.spent(:capped), 0.004, 'a refusal reserves nothing');

SELECT * FROM routing.insert_decision('b-1', :capped, 'chat', 1000, 500) \gset d1r_
SELECT is(pg_temp.spent(:capped), 0.004, 'an idempotent repeat reserves nothing');

-- Completion settles at the actual cost: 1000 * 1e-6 + 200 * 2e-6 = 0.0014.
SELECT * FROM routing.complete_decision(:d1_inference_id, '{}', 1000, 200, 10) \gset c1_
SELECT is(:'c1_cost_actual_usd'::numeric, 0.0014, 'completed at 0.0014');
SELECT is(pg_temp.spent(:capped), 0.0034, 'completion replaced the projection by the actual cost');
SELECT is(pg_temp.drift(), 0::bigint, 'the settlement matches the ledger');

-- A failover keeps the request in flight: its projection stays.
SELECT * FROM routing.fail_inference(:d2_inference_id, 'server_error', 'boom', 500) \gset f1_
SELECT is(:'f1_action'::text, 'failover', 'a server error fails over');
SELECT is(pg_temp.spent(:capped), 0.0034, 'a failover leaves the reservation as it is');

-- Give-up with a known output of 0: the attempt's cost (1000 in on b_mid: 0.002).
UPDATE routing.settings SET max_attempts = 2;
SELECT * FROM routing.fail_inference(:f1_next_inference_id, 'server_error', 'boom again', 500, NULL, 0) \gset f2_
SELECT is(:'f2_action'::text, 'give_up', 'the second failure gives up (max_attempts 2)');
SELECT is(pg_temp.spent(:capped), 0.0034, 'give-up settles at the attempt''s cost (0.0014 + 0.0020)');
SELECT is(pg_temp.drift(), 0::bigint, 'still no drift');

-- 0.0034 + 0.002 fits under 0.0055: the freed reservation is spendable.
SELECT * FROM routing.insert_decision('b-4', :capped, 'chat', 1000, 500) \gset d4_
SELECT is(:'d4_model_slug'::text, 'b_cheap', 'settled money frees the cap');
SELECT is(pg_temp.spent(:capped), 0.0054, '... and is reserved again');

-- The reaper: an abandoned attempt with no known output settles at 0.
SELECT is(routing.reap_stuck_inferences('0 seconds', clock_timestamp() + interval '1 minute'), 1::bigint,
          'the reaper closes the open attempt');
SELECT is(pg_temp.spent(:capped), 0.0034, 'a reaped request with no known usage counts 0');
SELECT is(pg_temp.drift(), 0::bigint, 'no drift after the reaper');

------------------------------------------------------------------ uncapped, cap set mid-day

SELECT * FROM routing.insert_decision('u-1', :uncapped, 'chat', 1000, 500) \gset u1_
SELECT is((SELECT count(*) FROM routing.budget_spend WHERE agent_id = :uncapped), 0::bigint,
          'an uncapped agent keeps no running spend');

SELECT * FROM routing.insert_decision('l-1', :late_cap, 'chat', 1000, 500) \gset l1_
UPDATE routing.agents SET daily_cap_usd = 1 WHERE id = :late_cap;
SELECT * FROM routing.insert_decision('l-2', :late_cap, 'chat', 1000, 500) \gset l2_
SELECT is(pg_temp.spent(:late_cap), 0.004,
          'the first capped decision of the day starts from the ledger (the earlier in-flight request included)');
UPDATE routing.agents SET daily_cap_usd = NULL WHERE id = :late_cap;
SELECT * FROM routing.insert_decision('l-3', :late_cap, 'chat', 1000, 500) \gset l3_
SELECT * FROM routing.complete_decision(:l1_inference_id, '{}', 1000, 200, 10) \gset lc_
SELECT is(pg_temp.spent(:late_cap), 0.0054, 'once the row exists it tracks every decision, capped or not');
SELECT is(pg_temp.drift(), 0::bigint, 'no drift across cap changes');

------------------------------------------------------------------------- the budget day

-- A request reserved on day D and completed on day D+1 settles against day D: the
-- day is the outcome's created_at in the spend time zone, never the completion's.
-- Moving the request to yesterday needs writes behind the write path (no triggers).
SELECT * FROM routing.insert_decision('b-5', :capped, 'chat', 1000, 500) \gset d5_
SELECT is(pg_temp.spent(:capped), 0.0054, 'b-5 reserved today');
SET LOCAL session_replication_role = replica;
UPDATE routing.routing_outcomes SET created_at = created_at - interval '1 day' WHERE id = :d5_outcome_id;
INSERT INTO routing.budget_spend (agent_id, spend_day, spent_usd)
VALUES (:capped, routing._spend_day(now() - interval '1 day'), 0.002);
UPDATE routing.budget_spend SET spent_usd = spent_usd - 0.002
 WHERE agent_id = :capped AND spend_day = routing._spend_day(now());
SET LOCAL session_replication_role = origin;
SELECT * FROM routing.complete_decision(:d5_inference_id, '{}', 1000, 0, 10) \gset c5_
SELECT is((SELECT spent_usd FROM routing.budget_spend
            WHERE agent_id = :capped AND spend_day = routing._spend_day(now() - interval '1 day')),
          0.001, 'a request of yesterday completed today settles on yesterday''s row');
SELECT is(pg_temp.spent(:capped), 0.0034, 'today''s row is untouched by it');

UPDATE routing.settings SET spend_day_time_zone = 'Pacific/Kiritimati';
SELECT is(routing._spend_day(timestamptz '2026-12-01 10:30:00+00'), date '2026-12-02',
          'the budget day is the date in the configured time zone (UTC+14 here)');
UPDATE routing.settings SET spend_day_time_zone = 'UTC';

------------------------------------------------------------------------------ drift

-- A write behind the write path (no trigger) is what the metric exists to catch.
SET LOCAL session_replication_role = replica;
UPDATE routing.routing_outcomes SET cost_actual_usd = 0.0001 WHERE id = :d1_outcome_id;
SET LOCAL session_replication_role = origin;
SELECT is(pg_temp.drift(), 1::bigint, 'a cost changed around the trigger is reported as drift');
SELECT is(routing._derived_spend(:capped, routing._spend_day(now())), 0.0021,
          'the ledger''s own sum is what the metric compares with');

-- The exact check, off the scrape path: recorded, and read by the report while fresh.
SELECT is(routing.check_budget_drift(), 1::bigint, 'check_budget_drift counts the drifted agent');
SELECT is((SELECT drifted FROM routing.budget_drift_checks WHERE spend_day = routing._spend_day(now())), 1::bigint,
          '... and records the count for the day');
UPDATE routing.budget_spend SET spent_usd = routing._derived_spend(agent_id, spend_day)
 WHERE spend_day = routing._spend_day(now());
SELECT is(pg_temp.drift(), 1::bigint, 'the report reads a check at most 5 minutes old instead of the day''s rows');
UPDATE routing.budget_drift_checks SET checked_at = now() - interval '6 minutes';
SELECT is(pg_temp.drift(), 0::bigint, 'an older check is not used: the report counts the day itself');
SELECT is(routing.check_budget_drift(), 0::bigint, 'a new check finds the counters repaired');
SELECT throws_ok($$SELECT routing.check_budget_drift('infinity')$$, '22023', NULL,
                 'check_budget_drift refuses a timestamp outside 1970..9999 (22023)');
SELECT ok(has_function_privilege('routing_ops', 'routing.check_budget_drift(timestamptz)', 'EXECUTE')
          AND NOT has_function_privilege('routing_app', 'routing.check_budget_drift(timestamptz)', 'EXECUTE'),
          'routing_ops runs the check, a gateway cannot');

SELECT * FROM finish();
ROLLBACK;
