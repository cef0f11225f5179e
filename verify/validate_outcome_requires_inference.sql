-- Verify routing_ledger:validate_outcome_requires_inference on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT c.convalidated FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = 'routing.routing_outcomes'::regclass
               AND c.conname = 'outcome_requires_inference_when_model_chosen'),
           'outcome_requires_inference_when_model_chosen is not validated';
END
$$;

ROLLBACK;
