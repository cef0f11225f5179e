-- Revert routing_ledger:budget_ledger from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DELETE FROM routing.integrity_metrics WHERE metric = 'budget_spend_drift';
DROP TRIGGER settle_budget_delete ON routing.routing_outcomes;
DROP TRIGGER settle_budget ON routing.routing_outcomes;
DROP FUNCTION routing.check_budget_drift(timestamptz);
DROP FUNCTION routing._budget_drift(timestamptz);
DROP FUNCTION routing._derive_budget_drift(timestamptz);
DROP TABLE routing.budget_drift_checks;
DROP FUNCTION routing._lock_budget_rows(bigint[]);
DROP FUNCTION routing._settle_budget_on_outcome();
DROP FUNCTION routing._settle_budget(uuid, timestamptz, numeric);
DROP FUNCTION routing._reserve_budget(uuid, numeric, numeric, timestamptz);
DROP FUNCTION routing._derived_spend(uuid, date);
DROP FUNCTION routing._spend_day(timestamptz);
DROP FUNCTION routing._outcome_spend(numeric, numeric, text);
DROP TABLE routing.budget_spend;

COMMIT;
