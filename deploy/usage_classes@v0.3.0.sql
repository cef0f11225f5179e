-- Deploy routing_ledger:usage_classes to pg
-- requires: ledger_tables
-- requires: inference_streaming
--
-- What an attempt used, by the token class a provider bills: cache reads, cache writes
-- (the 5-minute or the provider's only one), 1-hour cache writes and reasoning tokens,
-- beside the two totals, and the cost the provider itself reported. input_tokens stays
-- the total of every input token (cache reads and writes included) and output_tokens of
-- every output token (reasoning included), so a v0.2 reader's totals keep their meaning;
-- the client normalises each provider's usage to that. NULL: not reported.
--
-- Nullable columns without a default: catalog-only, no rewrite. One CHECK keeps the parts
-- non-negative and within their totals (a NULL part or total passes: not reported); one,
-- not one per rule, because every INSERT and UPDATE of an attempt prepares its table's
-- CHECK expressions afresh, and three cost the write path ~20 us a statement (measured).
-- Added NOT VALID (a brief ACCESS EXCLUSIVE, no scan), validated by validate_usage_classes.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.inferences
    ADD COLUMN IF NOT EXISTS cache_read_tokens     int,
    ADD COLUMN IF NOT EXISTS cache_write_tokens    int,
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens int,
    ADD COLUMN IF NOT EXISTS reasoning_tokens      int,
    ADD COLUMN IF NOT EXISTS provider_cost_usd     numeric;

COMMENT ON COLUMN routing.inferences.cache_read_tokens IS
    'Input tokens read from the provider''s prompt cache (part of input_tokens), billed at the cache_read rate. NULL: not reported.';
COMMENT ON COLUMN routing.inferences.cache_write_tokens IS
    'Input tokens written to the prompt cache with the provider''s default (5-minute, or only) lifetime (part of input_tokens), billed at the cache_write rate. NULL: not reported.';
COMMENT ON COLUMN routing.inferences.cache_write_1h_tokens IS
    'Input tokens written to the prompt cache with a 1-hour lifetime (part of input_tokens), billed at the cache_write_1h rate. NULL: not reported.';
COMMENT ON COLUMN routing.inferences.reasoning_tokens IS
    'Output tokens spent on reasoning or thinking (part of output_tokens, billed as output). NULL: not reported.';
COMMENT ON COLUMN routing.inferences.provider_cost_usd IS
    'The cost the provider (or an upstream gateway) reported for this attempt, kept beside the computed cost_usd and never replacing it; integrity_report''s cost_mismatch_24h compares the two.';

ALTER TABLE routing.inferences
    DROP CONSTRAINT IF EXISTS inference_usage_classes,
    ADD CONSTRAINT inference_usage_classes
        CHECK (cache_read_tokens >= 0 AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0
               AND reasoning_tokens >= 0 AND provider_cost_usd >= 0
               AND coalesce(cache_read_tokens, 0)::bigint + coalesce(cache_write_tokens, 0)
                   + coalesce(cache_write_1h_tokens, 0) <= input_tokens
               AND reasoning_tokens <= output_tokens) NOT VALID;

COMMIT;
