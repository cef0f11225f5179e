-- Revert routing_ledger:repair from pg
--
-- Drops the repair functions and their record, before-images included: revert this
-- change only once no run will need rolling back.

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.close_unmatched_orphans(interval, interval, boolean, timestamptz);
DROP FUNCTION routing.rollback_repair(bigint);
DROP FUNCTION routing.repair_orphans(interval, boolean);
DROP FUNCTION routing._orphan_matches(interval);
DROP FUNCTION routing._ledger_row(text, bigint);
DROP TABLE routing.repair_backup;
DROP TABLE routing.repair_runs;

COMMIT;
