-- Revert routing_ledger:router from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.choose_route(uuid, text, int, int, timestamptz);
DROP FUNCTION routing._check_route_args(text, uuid, text, int, int);
DROP FUNCTION routing._route(numeric, text, int, int, timestamptz);
DROP TABLE routing.model_task_quality;
DROP TABLE routing.model_cooldowns;

COMMIT;
