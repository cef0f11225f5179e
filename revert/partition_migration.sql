-- Revert routing_ledger:partition_migration from pg
--
-- A migration still running is backed out first (routing.migrate_ledger_back_out, in this
-- transaction, under its bounded lock); a finished one left a partitioned ledger, which
-- partitioned_ledger's revert switches back.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

DO $$
BEGIN
    IF EXISTS (SELECT FROM routing.ledger_migration) THEN
        PERFORM routing.migrate_ledger_back_out('5s');
    END IF;
END
$$;

DROP FUNCTION routing.migrate_ledger_back_out(interval);
DROP FUNCTION routing.validate_partition_links();
DROP FUNCTION routing.migrate_ledger_finish();
DROP FUNCTION routing.migrate_ledger_switch(interval);
DROP FUNCTION routing._swap_ledger_tables(boolean, interval);
DROP FUNCTION routing.migrate_ledger_verify();
DROP FUNCTION routing.migrate_ledger_copy(int);
DROP FUNCTION routing.migrate_ledger_start();
DROP FUNCTION routing._rename_ledger_indexes(regclass, text, text);
DROP FUNCTION routing._create_ledger_mirror(text);
DROP FUNCTION routing._attempt_partition_key(bigint, bigint, timestamptz);
DROP FUNCTION routing._ledger_migration_state();
DROP TABLE routing.ledger_migration;

COMMIT;
