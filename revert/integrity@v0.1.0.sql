-- Revert routing_ledger:integrity from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP VIEW routing.link_mismatches;
DROP VIEW routing.stuck_inferences;
DROP VIEW routing.orphan_outcomes;
DROP FUNCTION routing.integrity_report(timestamptz);
DROP TABLE routing.integrity_metrics;

COMMIT;
