-- Deploy routing_ledger:ledger_switch_scope to pg
-- requires: partitioned_ledger
-- requires: partition_migration
--
-- The ledger's maintenance functions keep their lock waits and the ledger's privileges in
-- their own scope:
-- - lock_timeout: each function that shortens lock_timeout for its locks (the switch of
--   partition_ledger / unpartition_ledger, retention's detach, the online migration's steps)
--   has it as a SET clause, so the caller's lock_timeout is back when the function returns.
--   A value set with set_config(..., true) inside such a function ends with it; before, it
--   stayed in force for the rest of the caller's transaction. The clause's value is the one
--   the function used for its locks; statements before its LOCK (catalog reads) wait as
--   long at most, and a dry run of drop_partitions_older_than 2 s.
-- - client_min_messages: the two switches (_switch_ledger_layout, _swap_ledger_tables)
--   quiet the views' cascade notices with a SET clause too, not for the caller's
--   transaction.
-- - _ledger_is_partitioned() finds routing_outcomes by name at each call. It resolved
--   'routing.routing_outcomes'::regclass once per plan, and a SQL function's plan lives for
--   the rest of the transaction inside a PL/pgSQL caller on PostgreSQL 15 to 17: after a
--   switch it looked up the dropped table, so a second partition_ledger() in the same
--   transaction failed with 42P07 instead of 55000, and create_partitions_ahead after an
--   unpartition_ledger with 42P01.
-- - privileges: partition_ledger and unpartition_ledger build new tables; they now grant
--   on them the privileges that roles other than the owner held on routing_outcomes and
--   inferences, table and column privileges, grant options included (a reporting role's
--   SELECT), as the online migration's switch does. Before, only routing_readonly's SELECT
--   was granted again. PUBLIC gets nothing, as before.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER FUNCTION routing._switch_ledger_layout(boolean, bigint) SET lock_timeout = '5s';
ALTER FUNCTION routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz) SET lock_timeout = '2s';
ALTER FUNCTION routing.migrate_ledger_start() SET lock_timeout = '100ms';
ALTER FUNCTION routing.migrate_ledger_copy(int) SET lock_timeout = '2s';
ALTER FUNCTION routing._swap_ledger_tables(boolean, interval) SET lock_timeout = '100ms';
ALTER FUNCTION routing.migrate_ledger_finish() SET lock_timeout = '100ms';
ALTER FUNCTION routing.migrate_ledger_back_out(interval) SET lock_timeout = '100ms';
ALTER FUNCTION routing._switch_ledger_layout(boolean, bigint) SET client_min_messages = 'warning';
ALTER FUNCTION routing._swap_ledger_tables(boolean, interval) SET client_min_messages = 'warning';

CREATE OR REPLACE FUNCTION routing._ledger_is_partitioned()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT c.relkind = 'p' FROM pg_catalog.pg_class c
     WHERE c.relname = 'routing_outcomes' AND c.relnamespace = 'routing'::regnamespace
$$;

-- The privileges held on the two ledger tables by roles other than their owner and PUBLIC:
-- [table, column or null, grantee (quoted as needed), privilege, grantable].
CREATE OR REPLACE FUNCTION routing._ledger_table_grants()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_array(g.relname, g.attname, g.grantee::regrole::text,
                                                g.privilege_type, g.is_grantable)
                              ORDER BY g.relname, g.attname NULLS FIRST, g.grantee, g.privilege_type), '[]')
      FROM (SELECT c.relname, NULL::name AS attname, a.grantee, a.privilege_type, a.is_grantable
              FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
             WHERE c.relnamespace = 'routing'::regnamespace AND c.relname IN ('routing_outcomes', 'inferences')
               AND a.grantee <> c.relowner AND a.grantee <> 0
            UNION ALL
            SELECT c.relname, t.attname, a.grantee, a.privilege_type, a.is_grantable
              FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_attribute t ON t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped
             CROSS JOIN LATERAL aclexplode(t.attacl) a
             WHERE c.relnamespace = 'routing'::regnamespace AND c.relname IN ('routing_outcomes', 'inferences')
               AND a.grantee <> c.relowner AND a.grantee <> 0) g
$$;

CREATE OR REPLACE FUNCTION routing._grant_ledger_tables(p_grants jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_g record;
BEGIN
    FOR v_g IN SELECT e ->> 0 AS relname, e ->> 1 AS attname, e ->> 2 AS grantee, e ->> 3 AS priv,
                      (e ->> 4)::boolean AS grantable
                 FROM jsonb_array_elements(p_grants) e LOOP
        EXECUTE format('GRANT %s%s ON routing.%I TO %s%s', v_g.priv,
                       CASE WHEN v_g.attname IS NOT NULL THEN format(' (%I)', v_g.attname) ELSE '' END,
                       v_g.relname, v_g.grantee,
                       CASE WHEN v_g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

-- A switch of partition_ledger / unpartition_ledger that grants the old tables' privileges
-- on the new ones.
CREATE OR REPLACE FUNCTION routing._switch_ledger_keeping_grants(p_to_partitioned boolean, p_max_rows bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_grants jsonb := routing._ledger_table_grants();
    v_rows   bigint;
BEGIN
    v_rows := routing._switch_ledger_layout(p_to_partitioned, p_max_rows);
    PERFORM routing._grant_ledger_tables(v_grants);
    RETURN v_rows;
END
$$;

CREATE OR REPLACE FUNCTION routing.partition_ledger(p_max_rows bigint DEFAULT 1000000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_int('partition_ledger', 'p_max_rows', p_max_rows, 0, 9223372036854775806);
    RETURN routing._switch_ledger_keeping_grants(true, p_max_rows);
END
$$;

CREATE OR REPLACE FUNCTION routing.unpartition_ledger(p_max_rows bigint DEFAULT 1000000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_int('unpartition_ledger', 'p_max_rows', p_max_rows, 0, 9223372036854775806);
    IF NOT EXISTS (SELECT FROM routing.ledger_layout_ddl) THEN
        RAISE EXCEPTION 'unpartition_ledger: no recorded unpartitioned layout'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'the ledger was not switched by routing.partition_ledger';
    END IF;
    RETURN routing._switch_ledger_keeping_grants(false, p_max_rows);
END
$$;

REVOKE ALL ON FUNCTION routing._ledger_table_grants() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._grant_ledger_tables(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._switch_ledger_keeping_grants(boolean, bigint) FROM PUBLIC;

COMMIT;
