-- Revert routing_ledger:vocabularies from pg
--
-- The CHECKs as @v0.3.0 left them: literal lists, validated. Adding a validated CHECK
-- scans its table under this transaction's ACCESS EXCLUSIVE lock (every row passes: the
-- lists are the same). Then the functions, which nothing else calls any more.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT routing_outcomes_judge_status_check,
    ADD CONSTRAINT routing_outcomes_judge_status_check
        CHECK (judge_status IN ('unlabeled', 'claimed', 'labeled', 'error', 'cannot_evaluate'));

ALTER TABLE routing.retry_policy
    DROP CONSTRAINT retry_policy_error_code_check,
    ADD CONSTRAINT retry_policy_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned',
        'stream_interrupted', 'cancelled')),
    DROP CONSTRAINT retry_policy_give_up_status_check,
    ADD CONSTRAINT retry_policy_give_up_status_check CHECK (give_up_status IN (
        'failed_rate_limited', 'failed_provider', 'failed_timeout',
        'failed_bad_request', 'failed_client', 'failed_abandoned',
        'failed_stream_interrupted', 'cancelled'));

-- On a ledger already partitioned (routing.partition_ledger), the unpartitioned layout's
-- definitions are recorded for unpartition_ledger to put back: record this CHECK as it
-- reads again.
UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'routing_outcomes_judge_status_check';

REVOKE EXECUTE ON FUNCTION routing._client_error_codes()
    FROM routing_judge, routing_readonly;

-- squawk-ignore ban-drop-function
DROP FUNCTION routing._outcome_is_orphan(bigint, text, text);
-- squawk-ignore ban-drop-function
DROP FUNCTION routing._judge_statuses();
-- squawk-ignore ban-drop-function
DROP FUNCTION routing._judge_verdicts();
-- squawk-ignore ban-drop-function
DROP FUNCTION routing._outcome_statuses();
-- squawk-ignore ban-drop-function
DROP FUNCTION routing._error_codes();

COMMIT;
