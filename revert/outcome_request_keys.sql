-- Revert routing_ledger:outcome_request_keys from pg
--
-- The triggers using these functions exist only on a partitioned ledger, which
-- partitioned_ledger's revert has switched back already.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

DROP FUNCTION IF EXISTS routing._follow_outcome_created_at();
DROP FUNCTION IF EXISTS routing._claim_request_key();
DROP TABLE IF EXISTS routing.outcome_request_keys;

COMMIT;
