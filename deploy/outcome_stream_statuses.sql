-- Deploy routing_ledger:outcome_stream_statuses to pg
-- requires: outcome_stream_statuses@v0.3.0
-- requires: vocabularies
--
-- The columns, constraints and functions of the released change are in
-- deploy/outcome_stream_statuses@v0.3.0.sql. This rework points its CHECK at the
-- vocabulary's home: routing_outcomes_outcome_status_check calls
-- routing._outcome_statuses(), which holds the same list as the released literal CHECK,
-- so every row already passes.
--
-- The CHECK keeps its released name. It is dropped and re-added NOT VALID in one
-- statement (a short ACCESS EXCLUSIVE lock, no scan); validate_vocabularies validates it
-- under SHARE UPDATE EXCLUSIVE.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT IF EXISTS routing_outcomes_outcome_status_check,
    ADD CONSTRAINT routing_outcomes_outcome_status_check
        CHECK (outcome_status = ANY (routing._outcome_statuses())) NOT VALID;

-- On a ledger already partitioned (routing.partition_ledger), the unpartitioned layout's
-- definitions are recorded for unpartition_ledger to put back: record this CHECK as it
-- now reads, or a back-out would bring the literal list back.
UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'routing_outcomes_outcome_status_check';

COMMIT;
