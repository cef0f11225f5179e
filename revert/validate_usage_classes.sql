-- Revert routing_ledger:validate_usage_classes from pg
--
-- The same CHECKs, NOT VALID again, as usage_classes and model_prices left them.

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_usage_classes_non_negative,
    ADD CONSTRAINT inference_usage_classes_non_negative
        CHECK (cache_read_tokens >= 0 AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0
               AND reasoning_tokens >= 0 AND provider_cost_usd >= 0) NOT VALID,
    DROP CONSTRAINT inference_cache_tokens_within_input,
    ADD CONSTRAINT inference_cache_tokens_within_input
        CHECK (coalesce(cache_read_tokens, 0)::bigint + coalesce(cache_write_tokens, 0)
               + coalesce(cache_write_1h_tokens, 0) <= coalesce(input_tokens, 0)
               OR (cache_read_tokens IS NULL AND cache_write_tokens IS NULL AND cache_write_1h_tokens IS NULL)) NOT VALID,
    DROP CONSTRAINT inference_reasoning_within_output,
    ADD CONSTRAINT inference_reasoning_within_output
        CHECK (reasoning_tokens <= output_tokens OR reasoning_tokens IS NULL) NOT VALID;

ALTER TABLE routing.catalog_changes
    DROP CONSTRAINT catalog_changes_table_name_check,
    ADD CONSTRAINT catalog_changes_table_name_check
        CHECK (table_name IN ('models', 'agents', 'task_floors', 'model_prices')) NOT VALID;

COMMIT;
