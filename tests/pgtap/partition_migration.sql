-- pgTAP for the partition_migration change: routing.ledger_migration and the
-- migrate_ledger_* functions' shape and privileges (owner only, none SECURITY DEFINER),
-- the steps' refusals out of order, then the online migration run through inside this
-- test's transaction: start builds the partitioned twins and the mirror, copy and verify
-- report matching counts, a live write is mirrored, the switch hands the names over, the
-- back-out removes the twins and leaves the catalog exactly as it was; then the migration
-- again, finished, and validate_partition_links.
--
-- Which steps can run inside a transaction: all of them. Each is a PL/pgSQL function with
-- no COMMIT and no CONCURRENTLY; "one transaction per step" is for production, to keep
-- each step's locks short beside live traffic, not a requirement of the code. What a
-- single transaction cannot show is concurrency: the writer racing the copy, the bounded
-- lock waits (55P03) and a second session's view; test_partition_migration.py covers those.
-- Deferred link checks pending from the write path block DDL on the ledger tables (55006),
-- so they are run (SET CONSTRAINTS ALL IMMEDIATE) before each step that alters them.
BEGIN;
SELECT plan(53);

------------------------------------------------------------------------------ helpers

\ir helpers/error_of.sql
\ir helpers/catalog.sql

-- migrate_ledger_copy until it returns 0: how many calls did work.
CREATE FUNCTION pg_temp.copy_all(p_batch int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_calls int := 0;
BEGIN
    WHILE routing.migrate_ledger_copy(p_batch) > 0 LOOP
        v_calls := v_calls + 1;
        IF v_calls > 1000 THEN
            RAISE EXCEPTION 'migrate_ledger_copy never returned 0';
        END IF;
    END LOOP;
    RETURN v_calls;
END
$$;

CREATE FUNCTION pg_temp.counts() RETURNS TABLE (outcomes bigint, attempts bigint) LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM routing.routing_outcomes), (SELECT count(*) FROM routing.inferences);
$$;

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'ledger_migration', 'routing.ledger_migration exists');
SELECT columns_are('routing', 'ledger_migration',
    ARRAY['singleton', 'phase', 'outcomes_until', 'inferences_until', 'outcomes_copied_to', 'inferences_copied_to',
          'rows_copied', 'started_at', 'verified_at', 'switched_at'], 'ledger_migration''s columns');
SELECT col_is_pk('routing', 'ledger_migration', 'singleton', 'its primary key is the singleton flag');
SELECT throws_ok(
    $$INSERT INTO routing.ledger_migration (singleton, phase, outcomes_until, inferences_until) VALUES (false, 'copying', 0, 0)$$,
    '23514', NULL, 'a second row (singleton false) is refused: one migration at a time');
SELECT throws_ok(
    $$INSERT INTO routing.ledger_migration (phase, outcomes_until, inferences_until) VALUES ('finished', 0, 0)$$,
    '23514', NULL, 'a phase other than copying or switched is refused');
SELECT results_eq(
    $$SELECT r, has_table_privilege(r, 'routing.ledger_migration', 'SELECT'),
             has_table_privilege(r, 'routing.ledger_migration', 'INSERT, UPDATE, DELETE, TRUNCATE')
        FROM unnest(ARRAY['public', 'routing_app', 'routing_judge', 'routing_ops', 'routing_readonly']) r ORDER BY r$$,
    $$VALUES ('public', false, false), ('routing_app', false, false), ('routing_judge', false, false),
             ('routing_ops', true, false), ('routing_readonly', true, false)$$,
    'ledger_migration: readable by routing_ops and routing_readonly, writable by nobody but the owner');

CREATE TEMP TABLE t_fn (sig regprocedure, public_api boolean);
INSERT INTO t_fn VALUES
    ('routing.migrate_ledger_start()', true), ('routing.migrate_ledger_copy(int)', true),
    ('routing.migrate_ledger_verify()', true), ('routing.migrate_ledger_switch(interval)', true),
    ('routing.migrate_ledger_finish()', true), ('routing.validate_partition_links()', true),
    ('routing.migrate_ledger_back_out(interval)', true),
    ('routing._ledger_migration_state()', false), ('routing._attempt_partition_key(bigint, bigint, timestamptz)', false),
    ('routing._create_ledger_mirror(text)', false), ('routing._rename_ledger_indexes(regclass, text, text)', false),
    ('routing._swap_ledger_tables(boolean, interval)', false);
SELECT results_eq(
    $$SELECT f.sig::text, format_type(p.prorettype, NULL) FROM t_fn f JOIN pg_proc p ON p.oid = f.sig
       WHERE f.public_api ORDER BY 1$$,
    $$VALUES ('routing.migrate_ledger_back_out(interval)', 'text'), ('routing.migrate_ledger_copy(integer)', 'bigint'),
             ('routing.migrate_ledger_finish()', 'text'), ('routing.migrate_ledger_start()', 'text'),
             ('routing.migrate_ledger_switch(interval)', 'text'), ('routing.migrate_ledger_verify()', 'record'),
             ('routing.validate_partition_links()', 'bigint')$$,
    'the seven steps and what they return');
SELECT is(pg_get_function_result('routing.migrate_ledger_verify()'::regprocedure),
    'TABLE(table_name text, live_rows bigint, partitioned_rows bigint)', 'migrate_ledger_verify returns the counts per table');
SELECT is_empty($$SELECT sig FROM t_fn f JOIN pg_proc p ON p.oid = f.sig WHERE p.prosecdef$$,
    'no function of the change is SECURITY DEFINER (owner only)');
SELECT is_empty(
    $$SELECT sig FROM t_fn f JOIN pg_proc p ON p.oid = f.sig
       WHERE NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c = 'search_path=pg_catalog, routing, pg_temp')$$,
    'every function of the change pins search_path');
SELECT is_empty(
    $$SELECT f.sig, r FROM t_fn f, unnest(ARRAY['public', 'routing_app', 'routing_judge', 'routing_ops', 'routing_readonly']) r
       WHERE has_function_privilege(r, f.sig, 'EXECUTE')$$,
    'no role but the owner may execute any of them (PUBLIC revoked, nothing granted)');
SELECT is_empty($$SELECT sig FROM t_fn WHERE public_api AND obj_description(sig, 'pg_proc') IS NULL$$,
    'each step carries a COMMENT');

------------------------------------------------------------------------- out of order

SELECT results_eq(
    $$SELECT left(pg_temp.error_of(c), 5) FROM unnest(ARRAY[
        'SELECT routing.migrate_ledger_copy()', 'SELECT * FROM routing.migrate_ledger_verify()',
        'SELECT routing.migrate_ledger_switch()', 'SELECT routing.migrate_ledger_finish()',
        'SELECT routing.migrate_ledger_back_out()']) WITH ORDINALITY u (c, n) ORDER BY n$$,
    $$VALUES ('55000'), ('55000'), ('55000'), ('55000'), ('55000')$$,
    'with no migration running, copy, verify, switch, finish and back_out each refuse with 55000');
SELECT is(routing.validate_partition_links(), 0::bigint, 'validate_partition_links on an unpartitioned ledger: nothing to validate');

---------------------------------------------------------------------------- fixture

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('pm_small', 'p1', 'small-1', 1, 2, 0.9, true), ('pm_big', 'p2', 'big-1', 3, 4, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-000000000701', 'f0000000-0000-4000-8000-000000000701', 'migration');
\set agent '''a0000000-0000-4000-8000-000000000701'''

-- History: completed, failed over then completed, in flight, and a rejected request 100
-- days old (the history partition).
CREATE TEMP TABLE t_d AS
SELECT g AS n, d.outcome_id, d.inference_id
  FROM generate_series(1, 5) g, routing.insert_decision('pm-' || g, :agent, 'general', 100, 50) d;
SELECT count(*) FROM t_d t, routing.complete_decision(t.inference_id, '{}', 100, 20, 5) c WHERE t.n IN (1, 4);
SELECT count(*) FROM routing.fail_inference((SELECT inference_id FROM t_d WHERE n = 2), 'server_error', 'HTTP 503') f,
                     routing.complete_decision(f.next_inference_id, '{}', 100, 20, 5) c;
INSERT INTO routing.routing_outcomes (request_id, agent_id, tenant_id, task_type, decision_rule, outcome_status,
                                      completed_at, created_at)
VALUES ('pm-old', :agent, 'f0000000-0000-4000-8000-000000000701', 'general', 'no_candidate_enrolled',
        'rejected', now() - interval '100 days', now() - interval '100 days');
SET CONSTRAINTS ALL IMMEDIATE;
CREATE TEMP TABLE t_before AS SELECT * FROM pg_temp.counts();
CREATE TEMP TABLE t_catalog AS SELECT c FROM pg_temp.catalog() c;

------------------------------------------------------------- start, copy, verify

SELECT is(routing.migrate_ledger_start(), 'copying', 'migrate_ledger_start() returns copying');
SELECT results_eq(
    $$SELECT relname::text COLLATE "default", relkind::text FROM pg_class
       WHERE relnamespace = 'routing'::regnamespace AND relname IN ('routing_outcomes_part', 'inferences_part') ORDER BY 1$$,
    $$VALUES ('inferences_part', 'p'), ('routing_outcomes_part', 'p')$$,
    'the partitioned twins routing_outcomes_part and inferences_part exist');
SELECT is((SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'routing.routing_outcomes_part'::regclass), 6,
    'routing_outcomes_part has its partitions: history, four months, DEFAULT');
SELECT is_empty(
    $$SELECT * FROM (SELECT count(*) FROM routing.routing_outcomes_part UNION ALL
                     SELECT count(*) FROM routing.inferences_part) s (n) WHERE n > 0$$,
    'the twins start empty');
SELECT results_eq(
    $$SELECT t.tgrelid::regclass::text, t.tgname::text COLLATE "default" FROM pg_trigger t
       WHERE t.tgrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
         AND t.tgname LIKE 'mirror%' ORDER BY 1$$,
    $$VALUES ('routing.inferences', 'mirror_to_partitioned'), ('routing.routing_outcomes', 'mirror_to_partitioned')$$,
    'the live tables carry the mirror triggers');
SELECT results_eq(
    $$SELECT phase, outcomes_until, inferences_until, outcomes_copied_to, inferences_copied_to, verified_at
        FROM routing.ledger_migration$$,
    $$SELECT 'copying', (SELECT max(id) FROM routing.routing_outcomes), (SELECT max(id) FROM routing.inferences),
             0::bigint, 0::bigint, NULL::timestamptz$$,
    'ledger_migration: copying, the history''s highest ids recorded, nothing copied yet');
SELECT throws_ok($$SELECT routing.migrate_ledger_start()$$, '55000', NULL, 'a second start: 55000');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.migrate_ledger_verify()$$), '55000: %not copied%',
    'verify before the copy: 55000');
SELECT alike(pg_temp.error_of($$SELECT routing.migrate_ledger_switch()$$), '55000: %not verified%',
    'switch before the verification: 55000');
SELECT alike(pg_temp.error_of($$SELECT routing.migrate_ledger_finish()$$), '55000: %not switched%',
    'finish before the switch: 55000');
SELECT alike(pg_temp.error_of($$SELECT routing.migrate_ledger_copy(0)$$), '22023: %p_batch%', 'copy(0): 22023');

-- A live write while the history is copied: mirrored in its own transaction (statement).
SET CONSTRAINTS ALL DEFERRED;
CREATE TEMP TABLE t_live AS SELECT * FROM routing.insert_decision('pm-live', :agent, 'general', 100, 50);
SET CONSTRAINTS ALL IMMEDIATE;
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM routing.routing_outcomes_part WHERE id = (SELECT outcome_id FROM t_live)),
             (SELECT count(*) FROM routing.inferences_part WHERE id = (SELECT inference_id FROM t_live)),
             (SELECT count(*) FROM routing.outcome_request_keys WHERE outcome_id = (SELECT outcome_id FROM t_live))$$,
    $$VALUES (1::bigint, 1::bigint, 1::bigint)$$,
    'a decision made during the copy is in the twins, with its request key, at once');

SELECT cmp_ok(pg_temp.copy_all(2), '>=', 4, 'migrate_ledger_copy(2) copies the history in several batches, then returns 0');
SELECT is(routing.migrate_ledger_copy(2), 0::bigint, 'once copied, migrate_ledger_copy returns 0');
SELECT results_eq(
    $$SELECT table_name, live_rows, partitioned_rows FROM routing.migrate_ledger_verify() ORDER BY 1$$,
    $$SELECT 'inferences', attempts, attempts FROM pg_temp.counts()
      UNION ALL SELECT 'routing_outcomes', outcomes, outcomes FROM pg_temp.counts() ORDER BY 1$$,
    'migrate_ledger_verify reports matching live and partitioned counts, equal to the ledger''s');
SELECT set_eq(
    $$SELECT id, created_at, request_id, outcome_status FROM routing.routing_outcomes_part$$,
    $$SELECT id, created_at, request_id, outcome_status FROM routing.routing_outcomes$$,
    'the twin holds the same outcomes');
SELECT is((SELECT count(*) FROM routing.outcome_request_keys), (SELECT outcomes FROM pg_temp.counts()),
    'one request key per outcome');
SELECT ok((SELECT verified_at IS NOT NULL FROM routing.ledger_migration), 'the verification is recorded');

-------------------------------------------------------------- switch, then back out

SELECT is(routing.migrate_ledger_switch('1 second'), 'switched', 'migrate_ledger_switch() returns switched');
SELECT results_eq(
    $$SELECT relname::text COLLATE "default", relkind::text FROM pg_class
       WHERE relnamespace = 'routing'::regnamespace
         AND relname IN ('routing_outcomes', 'inferences', 'routing_outcomes_v01', 'inferences_v01', 'routing_outcomes_part')
       ORDER BY 1$$,
    $$VALUES ('inferences', 'p'), ('inferences_v01', 'r'), ('routing_outcomes', 'p'), ('routing_outcomes_v01', 'r')$$,
    'after the switch the partitioned tables have the names; the old ones are kept as *_v01');
SELECT is((SELECT phase FROM routing.ledger_migration), 'switched', 'ledger_migration: switched');
SET CONSTRAINTS ALL DEFERRED;
CREATE TEMP TABLE t_after AS SELECT * FROM routing.insert_decision('pm-after', :agent, 'general', 100, 50);
SET CONSTRAINTS ALL IMMEDIATE;
SELECT results_eq(
    $$SELECT (SELECT tableoid::regclass::text FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_after)),
             (SELECT count(*) FROM routing.routing_outcomes_v01 WHERE id = (SELECT outcome_id FROM t_after)),
             (SELECT count(*) FROM routing.inferences_v01 WHERE id = (SELECT inference_id FROM t_after))$$,
    $$SELECT 'routing.routing_outcomes_' || (SELECT suffix FROM routing._partition_range('month', now())), 1::bigint, 1::bigint$$,
    'a decision after the switch lands in a partition and is mirrored back to the *_v01 tables');

SELECT is(routing.migrate_ledger_back_out('1 second'), 'unpartitioned', 'migrate_ledger_back_out() returns unpartitioned');
SELECT is_empty(
    $$SELECT t FROM unnest(ARRAY['routing.routing_outcomes_part', 'routing.inferences_part', 'routing.routing_outcomes_v01',
                                 'routing.inferences_v01']) t WHERE to_regclass(t) IS NOT NULL$$,
    'the back-out removes the twins (and nothing of *_v01 is left)');
SELECT is_empty($$SELECT c FROM pg_temp.catalog() c EXCEPT ALL SELECT c FROM t_catalog$$,
    'after the back-out nothing in schema routing is new or changed');
SELECT is_empty($$SELECT c FROM t_catalog EXCEPT ALL SELECT c FROM pg_temp.catalog() c$$,
    'and nothing is missing: the ledger exactly as before the migration');
SELECT results_eq($$SELECT * FROM pg_temp.counts()$$, $$SELECT outcomes + 2, attempts + 2 FROM t_before$$,
    'every row kept, the two decisions made during the migration included');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM routing.outcome_request_keys), (SELECT count(*) FROM routing.ledger_migration),
             (SELECT count(*) FROM routing.ledger_layout_ddl)$$,
    $$VALUES (0::bigint, 0::bigint, 0::bigint)$$, 'keys, migration state and recorded layout are cleared');
SELECT ok(to_regprocedure('routing._mirror_routing_outcomes()') IS NULL AND to_regprocedure('routing._mirror_inferences()') IS NULL,
    'the mirror functions are dropped');

------------------------------------------------------------- again, and finish

SELECT is(routing.migrate_ledger_start(), 'copying', 'a migration can start again after a back-out');
SELECT cmp_ok(pg_temp.copy_all(1000), '>=', 1, 'copied');
SELECT is((SELECT count(*)::int FROM routing.migrate_ledger_verify() WHERE live_rows = partitioned_rows), 2, 'verified');
SELECT is(routing.migrate_ledger_switch('1 second'), 'switched', 'switched');
SELECT alike(pg_temp.error_of($$SELECT routing.validate_partition_links()$$), '55000: %still running%',
    'validate_partition_links while the migration runs: 55000');
SELECT is(routing.migrate_ledger_finish(), 'partitioned', 'migrate_ledger_finish() returns partitioned');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM routing.ledger_migration), to_regclass('routing.routing_outcomes_v01')::text,
             (SELECT relkind::text FROM pg_class WHERE oid = 'routing.routing_outcomes'::regclass)$$,
    $$VALUES (0::bigint, NULL::text, 'p')$$, 'finished: no migration row, no *_v01 table, the ledger partitioned');
SELECT is(routing.validate_partition_links(),
    (SELECT count(*) FROM pg_constraint WHERE connamespace = 'routing'::regnamespace AND contype = 'f'
        AND conname ~ '_(inference|outcome)_fkey$' AND conrelid IN (SELECT ('routing.' || partition_name)::regclass FROM routing.ledger_partitions)),
    'validate_partition_links validates every pair''s link');
SELECT is_empty(
    $$SELECT conname FROM pg_constraint WHERE connamespace = 'routing'::regnamespace AND NOT convalidated$$,
    'and no constraint of schema routing is left NOT VALID');
SET CONSTRAINTS ALL DEFERRED;
SELECT results_eq(
    $$SELECT outcome_id FROM routing.insert_decision('pm-after', 'a0000000-0000-4000-8000-000000000701', 'general', 100, 50)$$,
    $$SELECT outcome_id FROM t_after$$, 'idempotency holds on the migrated ledger: a repeat returns the outcome');

SELECT * FROM finish();
ROLLBACK;
