-- Verify routing_ledger:validate_ledger_rules on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT count(*) FILTER (WHERE c.convalidated) = 2
              FROM pg_catalog.pg_constraint c
             WHERE (c.conrelid = 'routing.inferences'::regclass AND c.conname = 'inference_rules')
                OR (c.conrelid = 'routing.routing_outcomes'::regclass AND c.conname = 'outcome_rules')),
           'the ledger rules'' CHECKs are not validated';
END
$$;

ROLLBACK;
