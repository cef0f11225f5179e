-- Revert routing_ledger:ops_metrics from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.ops_metrics(interval, timestamptz);
DROP FUNCTION routing.describe_metrics();
DROP TABLE routing.ops_metric_families;

COMMIT;
