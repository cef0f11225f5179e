-- Revert routing_ledger:write_path from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.fail_inference(bigint, text, text, int, int);
DROP FUNCTION routing.complete_decision(bigint, jsonb, int, int, int);
DROP FUNCTION routing.insert_decision(text, uuid, text, int, int, jsonb);
DROP FUNCTION routing._failure_decision(routing.inferences);
DROP FUNCTION routing._decision_row(uuid, text);
DROP TABLE routing.retry_policy;

COMMIT;
