-- Revert routing_ledger:ledger_tables from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.routing_outcomes DROP CONSTRAINT routing_outcomes_inference_id_fkey;
DROP TABLE routing.inferences;
DROP TABLE routing.routing_outcomes;
DROP FUNCTION routing._guard_inference_transition();
DROP FUNCTION routing._guard_outcome_transition();
DROP FUNCTION routing._restoring_repair_run();

COMMIT;
