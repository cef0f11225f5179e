-- Revert routing_ledger:usage_classes from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.inferences
    DROP CONSTRAINT IF EXISTS inference_usage_classes,
    DROP COLUMN IF EXISTS cache_read_tokens,
    DROP COLUMN IF EXISTS cache_write_tokens,
    DROP COLUMN IF EXISTS cache_write_1h_tokens,
    DROP COLUMN IF EXISTS reasoning_tokens,
    DROP COLUMN IF EXISTS provider_cost_usd;

COMMIT;
