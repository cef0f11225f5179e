-- Verify routing_ledger:usage_classes on pg
--
-- Sqitch runs only this verify script of the reworked change: it checks the released
-- change's columns as verify/usage_classes@v0.3.0.sql did, and that the CHECK calls
-- routing._usage_classes_fit(), which passes and fails what the released expression did.

BEGIN;

SELECT cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, provider_cost_usd
  FROM routing.inferences WHERE false;

DO $$
BEGIN
    ASSERT (SELECT pg_catalog.pg_get_constraintdef(c.oid) ~ 'routing\._usage_classes_fit\('
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = 'routing.inferences'::regclass
               AND c.conname = 'inference_usage_classes'),
           'inference_usage_classes does not call routing._usage_classes_fit()';
    ASSERT routing._usage_classes_fit(10, 5, 5, 3, 0.1, 20, 3)
       AND routing._usage_classes_fit(NULL, NULL, NULL, NULL, NULL, 20, 3) IS NULL
       AND NOT routing._usage_classes_fit(10, 5, 6, 0, 0, 20, 3)
       AND NOT routing._usage_classes_fit(NULL, NULL, NULL, 4, NULL, 20, 3)
       AND NOT routing._usage_classes_fit(-1, NULL, NULL, NULL, NULL, 20, 3),
           'routing._usage_classes_fit() does not test what the released CHECK tested';
END
$$;

ROLLBACK;
