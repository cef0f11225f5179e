-- Revert routing_ledger:outcome_stream_statuses from pg
--
-- The CHECK as @v0.3.0 left it: the literal list, validated. Adding a validated CHECK
-- scans the table under this transaction's ACCESS EXCLUSIVE lock (every row passes: the
-- list is the same).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT routing_outcomes_outcome_status_check,
    ADD CONSTRAINT routing_outcomes_outcome_status_check CHECK (outcome_status IN (
        'succeeded', 'failed_rate_limited', 'failed_provider',
        'failed_timeout', 'failed_bad_request', 'failed_client',
        'failed_abandoned', 'failed_pre_dispatch', 'rejected',
        'failed_stream_interrupted', 'cancelled'));

-- On a ledger already partitioned (routing.partition_ledger), the unpartitioned layout's
-- definitions are recorded for unpartition_ledger to put back: record this CHECK as it
-- reads again.
UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'routing_outcomes_outcome_status_check';

COMMIT;
