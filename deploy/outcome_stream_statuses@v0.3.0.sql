-- Deploy routing_ledger:outcome_stream_statuses to pg
-- requires: ledger_tables
--
-- The outcome_status vocabulary gains failed_stream_interrupted (a stream broke after
-- its first token) and cancelled (the caller stopped). Its definition is the released
-- CHECK routing_outcomes_outcome_status_check, widened under its own name: dropped and
-- re-added NOT VALID in one statement (a short ACCESS EXCLUSIVE lock on this table
-- alone, no scan); validate_inference_streaming validates it.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT IF EXISTS routing_outcomes_outcome_status_check,
    ADD CONSTRAINT routing_outcomes_outcome_status_check CHECK (outcome_status IN (
        'succeeded', 'failed_rate_limited', 'failed_provider',
        'failed_timeout', 'failed_bad_request', 'failed_client',
        'failed_abandoned', 'failed_pre_dispatch', 'rejected',
        'failed_stream_interrupted', 'cancelled')) NOT VALID;

COMMIT;
