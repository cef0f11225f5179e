-- Verify routing_ledger:partitioned_ledger on pg

BEGIN;

SELECT partition_width FROM routing.settings WHERE false;
SELECT partition_name, table_name, suffix, is_default, range_from, range_to FROM routing.ledger_partitions WHERE false;
SELECT ordinal, table_name, kind, name, definition, validated FROM routing.ledger_layout_ddl WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing.partition_ledger(bigint)', 'routing.unpartition_ledger(bigint)',
                             'routing.create_partitions_ahead(int, timestamptz)',
                             'routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz)',
                             'routing.purge_request_keys(int)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must pin its search_path';
        ASSERT NOT has_function_privilege('public', f, 'EXECUTE'), f || ' must not be executable by PUBLIC';
    END LOOP;
END
$$;

ROLLBACK;
