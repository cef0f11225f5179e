-- Revert routing_ledger:validate_vocabularies from pg
--
-- PostgreSQL cannot un-validate a constraint: each is dropped and added back NOT VALID
-- in one statement per table (a short ACCESS EXCLUSIVE lock, no scan), exactly as
-- vocabularies and the reworks of inference_streaming and outcome_stream_statuses left
-- them.

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT routing_outcomes_outcome_status_check,
    ADD CONSTRAINT routing_outcomes_outcome_status_check
        CHECK (outcome_status = ANY (routing._outcome_statuses())) NOT VALID,
    DROP CONSTRAINT routing_outcomes_judge_status_check,
    ADD CONSTRAINT routing_outcomes_judge_status_check
        CHECK (judge_status = ANY (routing._judge_statuses())) NOT VALID;

ALTER TABLE routing.inferences
    DROP CONSTRAINT inferences_error_code_check,
    ADD CONSTRAINT inferences_error_code_check
        CHECK (error_code = ANY (routing._error_codes())) NOT VALID;

ALTER TABLE routing.retry_policy
    DROP CONSTRAINT retry_policy_error_code_check,
    ADD CONSTRAINT retry_policy_error_code_check
        CHECK (error_code = ANY (routing._error_codes())) NOT VALID,
    DROP CONSTRAINT retry_policy_give_up_status_check,
    ADD CONSTRAINT retry_policy_give_up_status_check
        CHECK (give_up_status = ANY (routing._outcome_statuses())
               AND give_up_status NOT IN ('succeeded', 'failed_pre_dispatch', 'rejected')) NOT VALID;

COMMIT;
