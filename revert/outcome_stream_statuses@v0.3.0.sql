-- Revert routing_ledger:outcome_stream_statuses from pg
--
-- Puts back the v0.1 list exactly (validated): the ADD scans the table under this
-- transaction's ACCESS EXCLUSIVE lock (docs/runbook.md). Refuses, with the count, while
-- an outcome has a v0.2 status.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

DO $$
DECLARE
    v_outcomes bigint;
BEGIN
    SELECT count(*) INTO v_outcomes FROM routing.routing_outcomes
     WHERE outcome_status IN ('failed_stream_interrupted', 'cancelled');
    IF v_outcomes > 0 THEN
        RAISE EXCEPTION 'cannot revert outcome_stream_statuses: % outcome(s) are failed_stream_interrupted or cancelled', v_outcomes
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'v0.1 has no such states; keep v0.2 deployed, or archive those rows first';
    END IF;
END
$$;

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT routing_outcomes_outcome_status_check,
    ADD CONSTRAINT routing_outcomes_outcome_status_check CHECK (outcome_status IN (
        'succeeded', 'failed_rate_limited', 'failed_provider',
        'failed_timeout', 'failed_bad_request', 'failed_client',
        'failed_abandoned', 'failed_pre_dispatch', 'rejected'));

COMMIT;
