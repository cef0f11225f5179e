-- Verify routing_ledger:outcome_stream_statuses on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT pg_catalog.pg_get_constraintdef(c.oid) LIKE '%failed_stream_interrupted%cancelled%'
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = 'routing.routing_outcomes'::regclass
               AND c.conname = 'routing_outcomes_outcome_status_check'),
           'routing_outcomes_outcome_status_check does not admit failed_stream_interrupted and cancelled';
END
$$;

ROLLBACK;
