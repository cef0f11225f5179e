-- Verify routing_ledger:outcome_stream_statuses on pg
--
-- Sqitch runs only this verify script of the reworked change: the outcome-status CHECK
-- calls routing._outcome_statuses(), whose list admits failed_stream_interrupted and
-- cancelled (what verify/outcome_stream_statuses@v0.3.0.sql looked for in the CHECK).

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT pg_catalog.pg_get_constraintdef(c.oid) ~ 'routing\._outcome_statuses\(\)'
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = 'routing.routing_outcomes'::regclass
               AND c.conname = 'routing_outcomes_outcome_status_check'),
           'routing_outcomes_outcome_status_check does not call routing._outcome_statuses()';
    ASSERT pg_catalog.array_to_string(routing._outcome_statuses(), ',') LIKE '%failed_stream_interrupted%cancelled%',
           'routing._outcome_statuses() does not admit failed_stream_interrupted and cancelled';
END
$$;

ROLLBACK;
