-- Verify routing_ledger:inference_streaming on pg
--
-- Sqitch runs only this verify script of the reworked change: it checks the released
-- change's columns and function as verify/inference_streaming@v0.3.0.sql did, and that
-- the error-code CHECK calls routing._error_codes(), whose list admits the v0.2 codes.

BEGIN;

SELECT streamed, first_token_at, ttft_ms, heartbeat_at, usage_source FROM routing.inferences WHERE false;

DO $$
BEGIN
    ASSERT to_regprocedure('routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz)') IS NOT NULL,
           'routing._routed_past_due is missing';
    ASSERT (SELECT pg_catalog.pg_get_constraintdef(c.oid) ~ 'routing\._error_codes\(\)'
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = 'routing.inferences'::regclass
               AND c.conname = 'inferences_error_code_check'),
           'inferences_error_code_check does not call routing._error_codes()';
    ASSERT pg_catalog.array_to_string(routing._error_codes(), ',') LIKE '%stream_interrupted%cancelled%',
           'routing._error_codes() does not admit the v0.2 codes';
END
$$;

ROLLBACK;
