-- Revert routing_ledger:ledger_switch_scope from pg
--
-- partition_ledger, unpartition_ledger and _ledger_is_partitioned as partitioned_ledger
-- defined them (no privileges carried; the table found by its oid), the lock_timeout and
-- client_min_messages clauses removed (a function's set_config lasts for the rest of the
-- caller's transaction again).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing.partition_ledger(p_max_rows bigint DEFAULT 1000000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_int('partition_ledger', 'p_max_rows', p_max_rows, 0, 9223372036854775806);
    RETURN routing._switch_ledger_layout(true, p_max_rows);
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
    RETURN routing._switch_ledger_layout(false, p_max_rows);
END
$$;

DROP FUNCTION routing._switch_ledger_keeping_grants(boolean, bigint);
DROP FUNCTION routing._grant_ledger_tables(jsonb);
DROP FUNCTION routing._ledger_table_grants();

ALTER FUNCTION routing._switch_ledger_layout(boolean, bigint) RESET lock_timeout;
ALTER FUNCTION routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz) RESET lock_timeout;
ALTER FUNCTION routing.migrate_ledger_start() RESET lock_timeout;
ALTER FUNCTION routing.migrate_ledger_copy(int) RESET lock_timeout;
ALTER FUNCTION routing._swap_ledger_tables(boolean, interval) RESET lock_timeout;
ALTER FUNCTION routing.migrate_ledger_finish() RESET lock_timeout;
ALTER FUNCTION routing.migrate_ledger_back_out(interval) RESET lock_timeout;
ALTER FUNCTION routing._switch_ledger_layout(boolean, bigint) RESET client_min_messages;
ALTER FUNCTION routing._swap_ledger_tables(boolean, interval) RESET client_min_messages;

CREATE OR REPLACE FUNCTION routing._ledger_is_partitioned()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT c.relkind = 'p' FROM pg_catalog.pg_class c WHERE c.oid = 'routing.routing_outcomes'::regclass
$$;

COMMIT;
