-- Verify routing_ledger:usage_classes on pg

BEGIN;

SELECT cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, provider_cost_usd
  FROM routing.inferences
 WHERE false;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_constraint
             WHERE conrelid = 'routing.inferences'::regclass
               AND conname = 'inference_usage_classes') = 1,
           'the usage-class CHECK of routing.inferences is missing';
END
$$;

ROLLBACK;
