-- Revert routing_ledger:validate_inference_streaming from pg
--
-- PostgreSQL cannot un-validate a constraint: each is dropped and added back NOT VALID
-- in one statement (a short ACCESS EXCLUSIVE lock, no scan), exactly as
-- inference_streaming left it.

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inferences_error_code_check,
    ADD CONSTRAINT inferences_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned',
        'stream_interrupted', 'cancelled')) NOT VALID,
    DROP CONSTRAINT inference_usage_source_known,
    ADD CONSTRAINT inference_usage_source_known
        CHECK (usage_source IN ('provider', 'estimated')) NOT VALID,
    DROP CONSTRAINT inference_ttft_non_negative,
    ADD CONSTRAINT inference_ttft_non_negative CHECK (ttft_ms >= 0) NOT VALID;

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT routing_outcomes_outcome_status_check,
    ADD CONSTRAINT routing_outcomes_outcome_status_check CHECK (outcome_status IN (
        'succeeded', 'failed_rate_limited', 'failed_provider',
        'failed_timeout', 'failed_bad_request', 'failed_client',
        'failed_abandoned', 'failed_pre_dispatch', 'rejected',
        'failed_stream_interrupted', 'cancelled')) NOT VALID;

ALTER TABLE routing.retry_policy
    DROP CONSTRAINT retry_policy_error_code_check,
    ADD CONSTRAINT retry_policy_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned',
        'stream_interrupted', 'cancelled')) NOT VALID,
    DROP CONSTRAINT retry_policy_give_up_status_check,
    ADD CONSTRAINT retry_policy_give_up_status_check CHECK (give_up_status IN (
        'failed_rate_limited', 'failed_provider', 'failed_timeout',
        'failed_bad_request', 'failed_client', 'failed_abandoned',
        'failed_stream_interrupted', 'cancelled')) NOT VALID;

COMMIT;
