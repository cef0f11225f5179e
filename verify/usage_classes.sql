-- Verify routing_ledger:usage_classes on pg

BEGIN;

SELECT cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, provider_cost_usd
  FROM routing.inferences
 WHERE false;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_constraint
             WHERE conrelid = 'routing.inferences'::regclass
               AND conname IN ('inference_usage_classes_non_negative', 'inference_cache_tokens_within_input',
                               'inference_reasoning_within_output')) = 3,
           'the usage-class CHECKs of routing.inferences are missing';
END
$$;

ROLLBACK;
