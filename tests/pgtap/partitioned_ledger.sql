-- pgTAP for the partitioned_ledger change: settings.partition_width, ledger_layout_ddl,
-- the view ledger_partitions and the functions' shape and privileges (partition_ledger
-- and unpartition_ledger owner only; the upkeep functions SECURITY DEFINER for
-- routing_ops); then the switch itself, inside this test's transaction (partition_ledger
-- runs in its caller's transaction): the layout becomes partitioned with every row, key
-- and sequence position kept, insert_decision works on it, a duplicate (agent_id,
-- request_id) written directly raises 23505 through the request-key trigger,
-- ledger_partitions lists the pairs, create_partitions_ahead adds them and is idempotent,
-- a row no partition covers lands in the DEFAULT pair; and unpartition_ledger puts the
-- catalog back exactly.
BEGIN;
SELECT plan(54);

------------------------------------------------------------------------------ helpers

\ir helpers/error_of.sql
\ir helpers/catalog.sql

-- The suffix of the month k months from now's (UTC), as _partition_range names it.
CREATE FUNCTION pg_temp.month_suffix(k int) RETURNS text LANGUAGE sql AS $$
    SELECT 'p' || to_char((date_trunc('month', now() AT TIME ZONE 'UTC') + k * interval '1 month'), 'YYYYMM');
$$;

----------------------------------------------------------------------------- structure

SELECT has_column('routing', 'settings', 'partition_width', 'routing.settings.partition_width exists');
SELECT col_not_null('routing', 'settings', 'partition_width', 'partition_width is NOT NULL');
SELECT col_default_is('routing', 'settings', 'partition_width', 'month', 'partition_width defaults to month');
SELECT throws_ok($$UPDATE routing.settings SET partition_width = 'week'$$, '23514', NULL,
    'a width other than month or day is refused');
SELECT has_table('routing', 'ledger_layout_ddl', 'routing.ledger_layout_ddl exists');
SELECT is_empty(
    $$SELECT a.grantee FROM pg_class c, aclexplode(c.relacl) a
       WHERE c.oid = 'routing.ledger_layout_ddl'::regclass AND a.grantee <> c.relowner$$,
    'ledger_layout_ddl: owner only');
SELECT has_view('routing', 'ledger_partitions', 'the view routing.ledger_partitions exists');
SELECT columns_are('routing', 'ledger_partitions',
    ARRAY['partition_name', 'table_name', 'suffix', 'is_default', 'range_from', 'range_to'], 'ledger_partitions'' columns');
SELECT results_eq(
    $$SELECT r, has_table_privilege(r, 'routing.ledger_partitions', 'SELECT')
        FROM unnest(ARRAY['public', 'routing_app', 'routing_judge', 'routing_ops', 'routing_readonly']) r ORDER BY r$$,
    $$VALUES ('public', false), ('routing_app', false), ('routing_judge', false), ('routing_ops', true),
             ('routing_readonly', true)$$,
    'ledger_partitions: readable by routing_ops and routing_readonly only');

SELECT has_function('routing', 'partition_ledger', ARRAY['bigint'], 'partition_ledger(bigint)');
SELECT has_function('routing', 'unpartition_ledger', ARRAY['bigint'], 'unpartition_ledger(bigint)');
SELECT function_returns('routing', 'create_partitions_ahead', ARRAY['integer', 'timestamp with time zone'],
    'setof record', 'create_partitions_ahead(int, timestamptz) returns rows');
SELECT is(pg_get_function_result('routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz)'::regprocedure),
    'TABLE(partition_name text, range_from timestamp with time zone, range_to timestamp with time zone, outcomes bigint, inferences bigint, action text)',
    'drop_partitions_older_than(interval, boolean, boolean, timestamptz) returns the plan per partition');
SELECT function_returns('routing', 'purge_request_keys', ARRAY['integer'], 'bigint', 'purge_request_keys(int) returns bigint');

CREATE TEMP TABLE t_fn (sig regprocedure, definer boolean, ops boolean);
INSERT INTO t_fn VALUES
    ('routing.partition_ledger(bigint)', false, false),
    ('routing.unpartition_ledger(bigint)', false, false),
    ('routing.create_partitions_ahead(int, timestamptz)', true, true),
    ('routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz)', true, true),
    ('routing.purge_request_keys(int)', true, true);
SELECT is_empty($$SELECT sig FROM t_fn f JOIN pg_proc p ON p.oid = f.sig WHERE p.prosecdef <> f.definer$$,
    'create_partitions_ahead, drop_partitions_older_than and purge_request_keys are SECURITY DEFINER; the switches are not');
SELECT is_empty(
    $$SELECT p.oid::regprocedure FROM pg_proc p
       WHERE p.oid IN (SELECT sig FROM t_fn UNION ALL
                       SELECT unnest(ARRAY['routing._record_ledger_layout()', 'routing._ledger_is_partitioned()',
                                           'routing._partition_range(text, timestamptz)',
                                           'routing._create_partition_pair(text, timestamptz, timestamptz, text, text)',
                                           'routing._link_partition_pair(text, boolean)',
                                           'routing._switch_ledger_layout(boolean, bigint)']::regprocedure[]))
         AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=pg\_catalog%')$$,
    'every function of the change pins search_path');
SELECT results_eq(
    $$SELECT f.sig::text, r, has_function_privilege(r, f.sig, 'EXECUTE')
        FROM t_fn f, unnest(ARRAY['public', 'routing_app', 'routing_ops', 'routing_readonly']) r
       WHERE has_function_privilege(r, f.sig, 'EXECUTE') <> (f.ops AND r = 'routing_ops')$$,
    $$SELECT NULL::text, NULL::text, NULL::boolean WHERE false$$,
    'EXECUTE: routing_ops on the three upkeep functions, nobody but the owner on the switches, never PUBLIC or the app');
SELECT is_empty($$SELECT sig FROM t_fn WHERE obj_description(sig, 'pg_proc') IS NULL$$,
    'each public function carries a COMMENT');

------------------------------------------------------------- before the switch

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('pl_small', 'p1', 'small-1', 1, 2, 0.9, true), ('pl_big', 'p2', 'big-1', 3, 4, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-000000000601', 'f0000000-0000-4000-8000-000000000601', 'partitioned');
\set agent '''a0000000-0000-4000-8000-000000000601'''

SELECT is_empty($$SELECT * FROM routing.ledger_partitions$$, 'unpartitioned: ledger_partitions is empty');
SELECT throws_ok($$SELECT * FROM routing.create_partitions_ahead()$$, '55000', NULL,
    'create_partitions_ahead on an unpartitioned ledger: 55000');
SELECT throws_ok($$SELECT * FROM routing.drop_partitions_older_than('30 days')$$, '55000', NULL,
    'drop_partitions_older_than on an unpartitioned ledger: 55000');
SELECT is(routing.purge_request_keys(), 0::bigint, 'purge_request_keys on an unpartitioned ledger: nothing to do');
SELECT throws_ok($$SELECT routing.unpartition_ledger()$$, '55000', NULL,
    'unpartition_ledger before any switch: 55000 (no recorded layout)');

-- History: a completed request, one failed over and completed, one in flight, and a
-- rejected request 100 days old (older than the previous month: the history pair).
CREATE TEMP TABLE t_d AS
SELECT g AS n, d.outcome_id, d.inference_id
  FROM generate_series(1, 3) g, routing.insert_decision('pl-' || g, :agent, 'general', 100, 50) d;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_d WHERE n = 1), '{}', 100, 20, 5);
SELECT count(*) FROM routing.fail_inference((SELECT inference_id FROM t_d WHERE n = 2), 'server_error', 'HTTP 503') f,
                     routing.complete_decision(f.next_inference_id, '{}', 100, 20, 5) c;
INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id, task_type, decision_rule, outcome_status,
                                      completed_at, created_at)
VALUES (600001, 'pl-old', :agent, 'f0000000-0000-4000-8000-000000000601', 'general', 'no_candidate_enrolled',
        'rejected', now() - interval '100 days', now() - interval '100 days');
-- The write path's deferred link checks run now: a table with pending trigger events
-- cannot be switched.
SET CONSTRAINTS ALL IMMEDIATE;

CREATE TEMP TABLE t_before AS
SELECT (SELECT count(*) FROM routing.routing_outcomes) AS outcomes, (SELECT count(*) FROM routing.inferences) AS attempts,
       (SELECT max(id) FROM routing.inferences) AS max_attempt;
-- Triggers compared without parentheses: the back-out re-creates settle_budget from its
-- deparsed text, which nests its WHEN clause's ORs.
CREATE TEMP TABLE t_catalog AS SELECT c FROM pg_temp.catalog(false) c;

SELECT alike(pg_temp.error_of($$SELECT routing.partition_ledger(-1)$$), '22023: %p_max_rows%',
    'partition_ledger(-1): 22023 naming p_max_rows');
SELECT alike(pg_temp.error_of($$SELECT routing.partition_ledger(3)$$), '55000: %more than p_max_rows (3)%',
    'a ledger of more than p_max_rows rows is not switched in one transaction: 55000');
SELECT ok(NOT routing._ledger_is_partitioned(), 'the refused calls left the layout unpartitioned');

------------------------------------------------------------------------- the switch

SELECT is(routing.partition_ledger(), (SELECT outcomes + attempts FROM t_before),
    'partition_ledger() returns the rows it moved');
SET CONSTRAINTS ALL DEFERRED;
SELECT isnt_empty($$SELECT c FROM pg_temp.catalog(false) c EXCEPT ALL SELECT c FROM t_catalog$$,
    'the switch changed the catalog (so the comparison after the back-out can see a difference)');
SELECT results_eq(
    $$SELECT relname::text COLLATE "default", relkind::text FROM pg_class
       WHERE oid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass) ORDER BY 1$$,
    $$VALUES ('inferences', 'p'), ('routing_outcomes', 'p')$$, 'both ledger tables are partitioned');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM routing.routing_outcomes), (SELECT count(*) FROM routing.inferences),
             (SELECT count(*) FROM routing.outcome_request_keys)$$,
    $$SELECT outcomes, attempts, outcomes FROM t_before$$,
    'every outcome and attempt kept, one request key per outcome');
SELECT set_eq(
    $$SELECT suffix, table_name FROM routing.ledger_partitions$$,
    $$SELECT s, t FROM unnest(ARRAY['history', pg_temp.month_suffix(-1), pg_temp.month_suffix(0),
                                    pg_temp.month_suffix(1), pg_temp.month_suffix(2), 'default']) s,
                       unnest(ARRAY['routing_outcomes', 'inferences']) t$$,
    'ledger_partitions: history, the previous month, this one, two ahead and DEFAULT, a pair of each');
SELECT is_empty(
    $$SELECT p.suffix FROM routing.ledger_partitions p
       WHERE p.table_name = 'routing_outcomes' AND NOT p.is_default
         AND p.range_to IS DISTINCT FROM (SELECT min(q.range_from) FROM routing.ledger_partitions q
                                           WHERE q.table_name = 'routing_outcomes' AND q.range_from >= p.range_to)
         AND p.range_to < (SELECT max(q.range_to) FROM routing.ledger_partitions q WHERE q.table_name = 'routing_outcomes')$$,
    'the ranges are contiguous: each ends where the next begins');
SELECT is((SELECT tableoid::regclass::text FROM routing.routing_outcomes WHERE id = 600001),
    'routing.routing_outcomes_history', 'the 100-day-old outcome is in the history partition');
SELECT is((SELECT array_agg(DISTINCT tableoid::regclass::text) FROM routing.inferences
            WHERE outcome_id IN (SELECT outcome_id FROM t_d)),
    ARRAY['routing.inferences_' || pg_temp.month_suffix(0)], 'this month''s attempts are in this month''s inferences partition');
SELECT ok(routing._ledger_is_partitioned(), '_ledger_is_partitioned() says so');
-- In the same transaction as the switch, inside PL/pgSQL: _ledger_is_partitioned() finds the
-- table by name (change ledger_switch_scope; it resolved a regclass once per plan before).
SELECT throws_ok($$SELECT routing.partition_ledger()$$, '55000', 'the ledger is already partitioned',
    'partition_ledger on a partitioned ledger: 55000');

-- The write path on the new layout.
CREATE TEMP TABLE t_new AS SELECT * FROM routing.insert_decision('pl-new', :agent, 'general', 100, 50);
SELECT ok((SELECT inference_id > (SELECT max_attempt FROM t_before) FROM t_new),
    'insert_decision works on the partitioned ledger, the attempt sequence carried over');
SELECT results_eq(
    $$SELECT o.tableoid::regclass::text, i.tableoid::regclass::text
        FROM routing.routing_outcomes o JOIN routing.inferences i ON i.id = o.inference_id
       WHERE o.id = (SELECT outcome_id FROM t_new)$$,
    $$VALUES ('routing.routing_outcomes_' || pg_temp.month_suffix(0), 'routing.inferences_' || pg_temp.month_suffix(0))$$,
    'the new outcome and its attempt are in this month''s pair');
SELECT results_eq(
    $$SELECT outcome_status FROM routing.complete_decision((SELECT inference_id FROM t_new), '{}', 100, 20, 5)$$,
    $$VALUES ('succeeded')$$, 'complete_decision works on it');
SELECT results_eq(
    $$SELECT outcome_id FROM routing.insert_decision('pl-new', 'a0000000-0000-4000-8000-000000000601', 'general', 100, 50)$$,
    $$SELECT outcome_id FROM t_new$$, 'a repeat returns the outcome: idempotency holds across the layout');
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status, completed_at)
      VALUES ('pl-1', 'a0000000-0000-4000-8000-000000000601', 'general', 'no_candidate_enrolled', 'rejected', now())$$,
    '23505', 'duplicate key value violates unique constraint "outcome_request_keys_pkey"',
    'a duplicate (agent_id, request_id) written directly: 23505 through the request-key trigger');

-- Upkeep.
SELECT results_eq(
    $$SELECT partition_name, action FROM routing.create_partitions_ahead(3, now()) ORDER BY range_from$$,
    $$SELECT 'routing_outcomes_' || pg_temp.month_suffix(k), CASE WHEN k = 3 THEN 'created' ELSE 'exists' END
        FROM generate_series(-1, 3) k ORDER BY k$$,
    'create_partitions_ahead(3): the third month ahead created, the others exist');
SELECT is((SELECT count(*)::int FROM routing.ledger_partitions WHERE suffix = pg_temp.month_suffix(3)), 2,
    'and ledger_partitions lists its pair');
SELECT is_empty(
    $$SELECT * FROM routing.create_partitions_ahead(3, now()) WHERE action <> 'exists'$$,
    'a second run creates nothing (idempotent)');
SELECT throws_ok($$SELECT * FROM routing.create_partitions_ahead(1)$$, '22023', NULL,
    'create_partitions_ahead(1): 22023 (at least two ahead)');
-- A write no partition covers lands in DEFAULT: the write succeeds, the report says so,
-- and upkeep will not create the range over it.
INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status,
                                      completed_at, created_at)
VALUES ('pl-future', :agent, 'general', 'no_candidate_enrolled', 'rejected',
        now() + interval '2 years', now() + interval '2 years');
SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'rows_in_default_partition'), 1::bigint,
    'a row two years ahead lands in the DEFAULT pair and is counted as rows_in_default_partition');
SELECT is(
    (SELECT action FROM routing.create_partitions_ahead(2, now() + interval '2 years')
      WHERE partition_name = 'routing_outcomes_' || pg_temp.month_suffix(24)),
    'blocked_by_default_rows', 'create_partitions_ahead does not create the range over DEFAULT rows');
SELECT results_eq(
    $$SELECT partition_name, action FROM routing.drop_partitions_older_than('30 days') ORDER BY range_to$$,
    $$VALUES ('routing_outcomes_history', 'would_drop')$$,
    'retention''s dry run: the history pair would go, nothing is dropped');
SELECT ok(to_regclass('routing.routing_outcomes_history') IS NOT NULL, 'the dry run dropped nothing');

------------------------------------------------------------------------- the back-out

SET CONSTRAINTS ALL IMMEDIATE;
SELECT is(routing.unpartition_ledger(), (SELECT outcomes + attempts + 3 FROM t_before),
    'unpartition_ledger() returns the rows moved back (the history and the three rows written since)');
SET CONSTRAINTS ALL DEFERRED;
SELECT is_empty($$SELECT c FROM pg_temp.catalog(false) c EXCEPT ALL SELECT c FROM t_catalog$$,
    'after the back-out nothing in schema routing is new or changed');
SELECT is_empty($$SELECT c FROM t_catalog EXCEPT ALL SELECT c FROM pg_temp.catalog(false) c$$,
    'and nothing is missing: the unpartitioned layout exactly as before');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM routing.routing_outcomes), (SELECT count(*) FROM routing.outcome_request_keys),
             (SELECT count(*) FROM routing.ledger_layout_ddl), (SELECT count(*) FROM routing.ledger_partitions)$$,
    $$SELECT outcomes + 2, 0::bigint, 0::bigint, 0::bigint FROM t_before$$,
    'every outcome kept; keys, recorded layout and partitions gone');
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status, completed_at)
      VALUES ('pl-new', 'a0000000-0000-4000-8000-000000000601', 'general', 'no_candidate_enrolled', 'rejected', now())$$,
    '23505', 'duplicate key value violates unique constraint "routing_outcomes_request_agent_key"',
    'unpartitioned again: the released unique key refuses a duplicate');

SELECT * FROM finish();
ROLLBACK;
