-- Revert routing_ledger:catalog from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP TABLE routing.settings;
DROP TABLE routing.agents;
DROP TABLE routing.task_floors;
DROP TABLE routing.models;

COMMIT;
