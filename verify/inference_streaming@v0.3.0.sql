-- Verify routing_ledger:inference_streaming on pg

BEGIN;

SELECT streamed, first_token_at, ttft_ms, heartbeat_at, usage_source FROM routing.inferences WHERE false;

DO $$
BEGIN
    ASSERT to_regprocedure('routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz)') IS NOT NULL,
           'routing._routed_past_due is missing';
    ASSERT (SELECT pg_catalog.pg_get_constraintdef(c.oid) LIKE '%stream_interrupted%cancelled%'
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = 'routing.inferences'::regclass
               AND c.conname = 'inferences_error_code_check'),
           'inferences_error_code_check does not admit the v0.2 codes';
END
$$;

ROLLBACK;
