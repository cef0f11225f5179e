-- Deploy routing_ledger:validate_inference_streaming to pg
-- requires: inference_streaming
-- requires: outcome_stream_statuses
-- requires: retry_policy_stream_codes
--
-- VALIDATE the checks inference_streaming re-added NOT VALID. VALIDATE CONSTRAINT takes
-- SHARE UPDATE EXCLUSIVE: inserts and updates go on while it scans. Every row satisfies
-- them already (the widened lists contain the old ones; the new columns were NULL),
-- so this can only fail on a row someone wrote by hand in between.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences VALIDATE CONSTRAINT inferences_error_code_check;
ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_usage_source_known;
ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_ttft_non_negative;
ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT routing_outcomes_outcome_status_check;
ALTER TABLE routing.retry_policy VALIDATE CONSTRAINT retry_policy_error_code_check;
ALTER TABLE routing.retry_policy VALIDATE CONSTRAINT retry_policy_give_up_status_check;

COMMIT;
