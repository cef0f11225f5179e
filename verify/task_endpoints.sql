-- Verify routing_ledger:task_endpoints on pg

BEGIN;

SELECT endpoint FROM routing.task_floors WHERE false;

ROLLBACK;
