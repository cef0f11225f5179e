-- Revert routing_ledger:retry_policy_stream_codes from pg
--
-- The two rows go, and the policy's v0.1 CHECK lists come back exactly (validated; the
-- table has a dozen rows).

BEGIN;

SET LOCAL lock_timeout = '5s';

DELETE FROM routing.retry_policy WHERE error_code IN ('stream_interrupted', 'cancelled');

ALTER TABLE routing.retry_policy
    DROP CONSTRAINT retry_policy_error_code_check,
    ADD CONSTRAINT retry_policy_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned')),
    DROP CONSTRAINT retry_policy_give_up_status_check,
    ADD CONSTRAINT retry_policy_give_up_status_check CHECK (give_up_status IN (
        'failed_rate_limited', 'failed_provider', 'failed_timeout',
        'failed_bad_request', 'failed_client', 'failed_abandoned'));

COMMIT;
