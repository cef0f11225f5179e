-- Verify routing_ledger:ledger_switch_scope on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_proc p
             WHERE p.oid IN ('routing._switch_ledger_layout(boolean, bigint)'::regprocedure,
                             'routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz)'::regprocedure,
                             'routing.migrate_ledger_start()'::regprocedure,
                             'routing.migrate_ledger_copy(int)'::regprocedure,
                             'routing._swap_ledger_tables(boolean, interval)'::regprocedure,
                             'routing.migrate_ledger_finish()'::regprocedure,
                             'routing.migrate_ledger_back_out(interval)'::regprocedure)
               AND EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'lock\_timeout=%')) = 7,
           'a ledger maintenance function has no lock_timeout clause';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_proc p
             WHERE p.oid IN ('routing._switch_ledger_layout(boolean, bigint)'::regprocedure,
                             'routing._swap_ledger_tables(boolean, interval)'::regprocedure)
               AND 'client_min_messages=warning' = ANY (p.proconfig)) = 2,
           'a ledger switch has no client_min_messages clause';
    ASSERT position('relname' IN pg_get_functiondef('routing._ledger_is_partitioned()'::regprocedure)) > 0,
           '_ledger_is_partitioned() does not find the table by name';
    ASSERT position('_switch_ledger_keeping_grants' IN pg_get_functiondef('routing.partition_ledger(bigint)'::regprocedure)) > 0
       AND position('_switch_ledger_keeping_grants' IN pg_get_functiondef('routing.unpartition_ledger(bigint)'::regprocedure)) > 0,
           'partition_ledger / unpartition_ledger do not carry the ledger''s privileges';
END
$$;

ROLLBACK;
