-- Revert routing_ledger:reaper from pg

BEGIN;

DROP FUNCTION routing.reap_stuck_inferences(interval, timestamptz);

COMMIT;
