-- Deploy routing_ledger:validate_vocabularies to pg
-- requires: vocabularies
-- requires: judge_queue
-- requires: integrity
-- requires: repair
-- requires: inference_streaming
-- requires: outcome_stream_statuses
--
-- VALIDATE the CHECKs vocabularies and the reworks of inference_streaming and
-- outcome_stream_statuses re-added NOT VALID. VALIDATE CONSTRAINT takes SHARE
-- UPDATE EXCLUSIVE: inserts and updates go on while it scans. The lists are those the
-- released CHECKs held, so this can only fail on a row someone wrote by hand in between.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT routing_outcomes_outcome_status_check;
ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT routing_outcomes_judge_status_check;
ALTER TABLE routing.inferences VALIDATE CONSTRAINT inferences_error_code_check;
ALTER TABLE routing.retry_policy VALIDATE CONSTRAINT retry_policy_error_code_check;
ALTER TABLE routing.retry_policy VALIDATE CONSTRAINT retry_policy_give_up_status_check;

COMMIT;
