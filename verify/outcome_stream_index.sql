-- Verify routing_ledger:outcome_stream_index on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT x.indisvalid FROM pg_catalog.pg_index x
             WHERE x.indexrelid = to_regclass('routing.routing_outcomes_stream_endings')),
           'the index routing.routing_outcomes_stream_endings is missing or invalid';
END
$$;

ROLLBACK;
