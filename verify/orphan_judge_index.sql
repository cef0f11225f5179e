-- Verify routing_ledger:orphan_judge_index on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT x.indisvalid FROM pg_catalog.pg_index x
             WHERE x.indexrelid = to_regclass('routing.routing_outcomes_orphans_judge')),
           'the index routing.routing_outcomes_orphans_judge is missing or invalid';
END
$$;

ROLLBACK;
