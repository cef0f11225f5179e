-- Revert routing_ledger:inference_streaming from pg
--
-- The CHECK as @v0.3.0 left it: the literal list, validated. Adding a validated CHECK
-- scans the table under this transaction's ACCESS EXCLUSIVE lock (every row passes: the
-- list is the same). The columns, constraints and functions of the released change stay.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inferences_error_code_check,
    ADD CONSTRAINT inferences_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned',
        'stream_interrupted', 'cancelled'));

-- On a ledger already partitioned (routing.partition_ledger), the unpartitioned layout's
-- definitions are recorded for unpartition_ledger to put back: record this CHECK as it
-- reads again.
UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'inferences_error_code_check';

COMMIT;
