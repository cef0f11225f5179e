-- pgTAP for the function_comments change: a COMMENT ON text says the guarantee and the
-- SQLSTATEs in a few lines. The comments it re-issued (and those the v0.3.1 reworks of
-- write_path, router and model_prices shortened in place) are at most 300 characters and
-- name the SQLSTATEs the long ones named; every public function has a comment; and no
-- comment in schema routing is longer than 300 characters.
BEGIN;
SELECT plan(4);

-- Every comment of schema routing: functions, tables and views, columns, domains and
-- constraints. name: the object, or a function's name without its arguments (a reworked
-- signature keeps its name). The catalog's names and texts are in collation C: all are
-- given the default one, so they compare with the literals below.
CREATE TEMP VIEW t_comments (kind, object, name, comment) AS
SELECT kind, object, coalesce(name, object), comment COLLATE "default" FROM (
    SELECT 'function', p.oid::regprocedure::text, 'routing.' || p.proname COLLATE "default", obj_description(p.oid, 'pg_proc')
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'routing'::regnamespace AND p.prokind = 'f'
    UNION ALL
    SELECT 'relation', c.oid::regclass::text, NULL, obj_description(c.oid, 'pg_class')
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind IN ('r', 'p', 'v')
    UNION ALL
    SELECT 'column', c.oid::regclass::text || '.' || a.attname COLLATE "default", NULL, col_description(c.oid, a.attnum)
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind IN ('r', 'p', 'v')
    UNION ALL
    SELECT 'domain', t.oid::regtype::text, NULL, obj_description(t.oid, 'pg_type')
      FROM pg_catalog.pg_type t WHERE t.typnamespace = 'routing'::regnamespace AND t.typtype = 'd'
    UNION ALL
    SELECT 'constraint', k.conrelid::regclass::text || '.' || k.conname COLLATE "default", NULL, obj_description(k.oid, 'pg_constraint')
      FROM pg_catalog.pg_constraint k WHERE k.connamespace = 'routing'::regnamespace
) o (kind, object, name, comment);

-- What function_comments re-issued, then what the reworks shortened in place.
CREATE TEMP TABLE t_reissued (object text PRIMARY KEY);
INSERT INTO t_reissued VALUES
    ('routing.reap_stuck_inferences(interval,timestamp with time zone)'),
    ('routing.check_budget_drift(timestamp with time zone)'),
    ('routing.upsert_model(text,text,text,numeric,numeric,numeric,boolean,text,boolean,integer,numeric)'),
    ('routing.explain_outcome(bigint)'),
    ('routing.partition_ledger(bigint)'),
    ('routing.create_partitions_ahead(integer,timestamp with time zone)'),
    ('routing.drop_partitions_older_than(interval,boolean,boolean,timestamp with time zone)'),
    ('routing.purge_request_keys(integer)'),
    ('routing.migrate_ledger_start()'),
    ('routing.migrate_ledger_copy(integer)'),
    ('routing.migrate_ledger_verify()'),
    ('routing.migrate_ledger_switch(interval)'),
    ('routing.migrate_ledger_finish()'),
    ('routing.migrate_ledger_back_out(interval)'),
    ('routing.validate_partition_links()'),
    ('routing.budget_spend'),
    ('routing.route_snapshots'),
    ('routing.outcome_request_keys'),
    ('routing.ops_metrics(interval,timestamp with time zone)'),
    ('routing.set_model_price(text,text,numeric,timestamp with time zone,integer)'),
    ('routing.model_prices'),
    ('routing.insert_decision(text,uuid,text,integer,integer,jsonb,boolean)'),
    ('routing.complete_decision(bigint,jsonb,integer,integer,integer,text,jsonb)'),
    ('routing.fail_inference(bigint,text,text,integer,integer,integer,text,jsonb)'),
    ('routing.mark_first_token(bigint,integer)'),
    ('routing.choose_route(uuid,text,integer,integer,timestamp with time zone,text)'),
    ('routing._attempt_cost(text,timestamp with time zone,integer,integer,integer,integer,integer)');

SELECT is_empty(
    $$SELECT r.object FROM t_reissued r LEFT JOIN t_comments c USING (object)
       WHERE c.comment IS NULL OR length(c.comment) > 300$$,
    'each comment function_comments re-issued is set and at most 300 characters');
SELECT results_eq(
    $$SELECT r.object,
             coalesce((SELECT string_agg(DISTINCT m[1], ' ' ORDER BY m[1])
                FROM regexp_matches(c.comment, '\m([0-9]{2}[0-9A-Z]{3}|P[0-9]{4})\M', 'g') m), '')
        FROM t_reissued r JOIN t_comments c USING (object) ORDER BY r.object$$,
    $$SELECT * FROM (VALUES
             ('routing._attempt_cost(text,timestamp with time zone,integer,integer,integer,integer,integer)', ''),
             ('routing.choose_route(uuid,text,integer,integer,timestamp with time zone,text)', '22023 P0002'),
             ('routing.complete_decision(bigint,jsonb,integer,integer,integer,text,jsonb)', '22023 55000 P0002'),
             ('routing.fail_inference(bigint,text,text,integer,integer,integer,text,jsonb)', '22023 55000 P0002'),
             ('routing.insert_decision(text,uuid,text,integer,integer,jsonb,boolean)', '22023 P0002'),
             ('routing.mark_first_token(bigint,integer)', '22023 55000 P0002'),
             ('routing.model_prices', ''),
             ('routing.ops_metrics(interval,timestamp with time zone)', '22023'),
             ('routing.set_model_price(text,text,numeric,timestamp with time zone,integer)', '22023 P0002'),
             ('routing.budget_spend', ''),
             ('routing.check_budget_drift(timestamp with time zone)', '22023'),
             ('routing.create_partitions_ahead(integer,timestamp with time zone)', '22023 55000'),
             ('routing.drop_partitions_older_than(interval,boolean,boolean,timestamp with time zone)', '22023 55000'),
             ('routing.explain_outcome(bigint)', '22023 P0002'),
             ('routing.migrate_ledger_back_out(interval)', '55000 55P03'),
             ('routing.migrate_ledger_copy(integer)', '22023 55000'),
             ('routing.migrate_ledger_finish()', '55000 55P03'),
             ('routing.migrate_ledger_start()', '55000 55P03'),
             ('routing.migrate_ledger_switch(interval)', '55000 55P03'),
             ('routing.migrate_ledger_verify()', '55000'),
             ('routing.outcome_request_keys', ''),
             ('routing.partition_ledger(bigint)', '22023 55000 55P03'),
             ('routing.purge_request_keys(integer)', '22023 55000'),
             ('routing.reap_stuck_inferences(interval,timestamp with time zone)', '22023 55000'),
             ('routing.route_snapshots', ''),
             ('routing.upsert_model(text,text,text,numeric,numeric,numeric,boolean,text,boolean,integer,numeric)', '22023'),
             ('routing.validate_partition_links()', '23503 55000')) v (object, codes)
      ORDER BY object$$,
    'each names the SQLSTATEs the text it replaced named');
SELECT is_empty(
    $$SELECT object FROM t_comments
       WHERE kind = 'function' AND comment IS NULL AND object !~ '^routing\._'$$,
    'every public function of schema routing has a comment');

SELECT is_empty(
    $$SELECT kind || ' ' || object || ': ' || length(comment) FROM t_comments WHERE length(comment) > 300$$,
    'no comment of schema routing is longer than 300 characters');

SELECT * FROM finish();
ROLLBACK;
