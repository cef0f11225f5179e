-- Verify routing_ledger:partition_migration on pg

BEGIN;

SELECT phase, outcomes_until, inferences_until, outcomes_copied_to, inferences_copied_to,
       rows_copied, started_at, verified_at, switched_at
  FROM routing.ledger_migration WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing.migrate_ledger_start()', 'routing.migrate_ledger_copy(int)',
                             'routing.migrate_ledger_verify()', 'routing.migrate_ledger_switch(interval)',
                             'routing.migrate_ledger_finish()', 'routing.migrate_ledger_back_out(interval)',
                             'routing.validate_partition_links()'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must pin its search_path';
        ASSERT NOT has_function_privilege('public', f, 'EXECUTE'), f || ' must not be executable by PUBLIC';
    END LOOP;
END
$$;

ROLLBACK;
