-- Revert routing_ledger:reaper from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.reap_stuck_inferences(interval, timestamptz);

COMMIT;
