-- Verify routing_ledger:inference_provider_cost_index on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT x.indisvalid FROM pg_catalog.pg_index x
             WHERE x.indexrelid = to_regclass('routing.inferences_provider_cost')),
           'the index routing.inferences_provider_cost is missing or invalid';
END
$$;

ROLLBACK;
