-- Revert routing_ledger:task_endpoints from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.task_floors DROP COLUMN endpoint;

COMMIT;
