-- Verify routing_ledger:inference_streaming on pg

BEGIN;

SELECT streamed, first_token_at, ttft_ms, heartbeat_at, usage_source FROM routing.inferences WHERE false;

DO $$
DECLARE
    v_def text;
BEGIN
    ASSERT to_regprocedure('routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz)') IS NOT NULL,
           'routing._routed_past_due is missing';
    SELECT pg_catalog.pg_get_constraintdef(c.oid) INTO v_def
      FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = 'routing.inferences'::regclass
       AND c.conname = 'inferences_error_code_check';
    -- From the later change vocabularies on, the CHECK calls the list's one home.
    IF v_def LIKE '%routing._error_codes()%' THEN
        EXECUTE 'SELECT pg_catalog.array_to_string(routing._error_codes(), '','')' INTO v_def;
    END IF;
    ASSERT v_def LIKE '%stream_interrupted%cancelled%',
           'inferences_error_code_check does not admit the v0.2 codes';
END
$$;

ROLLBACK;
