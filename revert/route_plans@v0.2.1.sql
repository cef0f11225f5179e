-- Revert routing_ledger:route_plans from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing._planned_explanation(numeric, text, int, int, timestamptz);
DROP FUNCTION routing._build_route_plan(text, timestamptz);
DROP TRIGGER bump_route_epoch ON routing.route_snapshots;
DROP TRIGGER bump_route_epoch ON routing.model_cooldowns;
DROP TRIGGER bump_route_epoch ON routing.model_task_quality;
DROP TRIGGER bump_route_epoch ON routing.settings;
DROP TRIGGER bump_route_epoch ON routing.task_floors;
DROP TRIGGER bump_route_epoch ON routing.models;
DROP FUNCTION routing._route_epochs();
DROP FUNCTION routing._bump_route_epoch();
DROP TABLE routing.route_plans;
DROP TABLE routing.route_epochs;

COMMIT;
