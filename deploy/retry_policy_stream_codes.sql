-- Deploy routing_ledger:retry_policy_stream_codes to pg
-- requires: write_path
-- requires: outcome_stream_statuses
--
-- What fail_inference does after the two v0.2 error codes, before the first token (after
-- it, every error gives up: that rule is fail_inference's). A stream that broke before
-- anything reached the caller fails over like a broken connection; a cancellation
-- gives up (cancelled): the caller stopped. The policy's own CHECK lists (error_code,
-- give_up_status) are widened under their own names, NOT VALID, in one statement on
-- this table alone; validate_inference_streaming validates them.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.retry_policy
    DROP CONSTRAINT IF EXISTS retry_policy_error_code_check,
    ADD CONSTRAINT retry_policy_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned',
        'stream_interrupted', 'cancelled')) NOT VALID,
    DROP CONSTRAINT IF EXISTS retry_policy_give_up_status_check,
    ADD CONSTRAINT retry_policy_give_up_status_check CHECK (give_up_status IN (
        'failed_rate_limited', 'failed_provider', 'failed_timeout',
        'failed_bad_request', 'failed_client', 'failed_abandoned',
        'failed_stream_interrupted', 'cancelled')) NOT VALID;

INSERT INTO routing.retry_policy (error_code, same_model_retries, then_action, give_up_status) VALUES
    ('stream_interrupted', 0, 'failover', 'failed_stream_interrupted'),
    ('cancelled',          0, 'give_up',  'cancelled')
ON CONFLICT (error_code) DO NOTHING;

COMMIT;
