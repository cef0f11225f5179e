-- Revert routing_ledger:endpoints from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.models DROP COLUMN endpoint;
DROP DOMAIN routing.endpoint;

COMMIT;
