-- Revert routing_ledger:inference_streaming from pg
--
-- Puts back the v0.1 error_code list exactly (validated, under its own name): the ADD
-- scans the table under this transaction's ACCESS EXCLUSIVE lock (docs/runbook.md).
-- Refuses, with the count, while an attempt has a v0.2 code. Dropping the columns is a
-- catalog change.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

DO $$
DECLARE
    v_attempts bigint;
BEGIN
    SELECT count(*) INTO v_attempts FROM routing.inferences
     WHERE error_code IN ('stream_interrupted', 'cancelled');
    IF v_attempts > 0 THEN
        RAISE EXCEPTION 'cannot revert inference_streaming: % attempt(s) failed with stream_interrupted or cancelled', v_attempts
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'v0.1 has no such codes; keep v0.2 deployed, or archive those rows first';
    END IF;
END
$$;

DROP FUNCTION routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz);

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_ttft_non_negative,
    DROP CONSTRAINT inference_usage_source_known,
    DROP CONSTRAINT inferences_error_code_check,
    ADD CONSTRAINT inferences_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned')),
    DROP COLUMN usage_source,
    DROP COLUMN heartbeat_at,
    DROP COLUMN ttft_ms,
    DROP COLUMN first_token_at,
    DROP COLUMN streamed;

COMMIT;
