-- Revert routing_ledger:validate_usage_classes from pg
--
-- The same CHECKs, NOT VALID again, as usage_classes and model_prices left them.

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_usage_classes,
    ADD CONSTRAINT inference_usage_classes
        CHECK (cache_read_tokens >= 0 AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0
               AND reasoning_tokens >= 0 AND provider_cost_usd >= 0
               AND coalesce(cache_read_tokens, 0)::bigint + coalesce(cache_write_tokens, 0)
                   + coalesce(cache_write_1h_tokens, 0) <= input_tokens
               AND reasoning_tokens <= output_tokens) NOT VALID;

ALTER TABLE routing.catalog_changes
    DROP CONSTRAINT catalog_changes_table_name_check,
    ADD CONSTRAINT catalog_changes_table_name_check
        CHECK (table_name IN ('models', 'agents', 'task_floors', 'model_prices')) NOT VALID;

COMMIT;
