-- Revert routing_ledger:quality_gate from pg

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.settings DROP COLUMN IF EXISTS quality_gate_z;

COMMIT;
