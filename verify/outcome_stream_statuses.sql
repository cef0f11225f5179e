-- Verify routing_ledger:outcome_stream_statuses on pg

BEGIN;

DO $$
DECLARE
    v_def text;
BEGIN
    SELECT pg_catalog.pg_get_constraintdef(c.oid) INTO v_def
      FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = 'routing.routing_outcomes'::regclass
       AND c.conname = 'routing_outcomes_outcome_status_check';
    -- From the later change vocabularies on, the CHECK calls the list's one home.
    IF v_def LIKE '%routing._outcome_statuses()%' THEN
        EXECUTE 'SELECT pg_catalog.array_to_string(routing._outcome_statuses(), '','')' INTO v_def;
    END IF;
    ASSERT v_def LIKE '%failed_stream_interrupted%cancelled%',
           'routing_outcomes_outcome_status_check does not admit failed_stream_interrupted and cancelled';
END
$$;

ROLLBACK;
