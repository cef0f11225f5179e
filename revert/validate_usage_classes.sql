-- Revert routing_ledger:validate_usage_classes from pg
--
-- The CHECK NOT VALID again, as the rework of usage_classes left it.

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_usage_classes,
    ADD CONSTRAINT inference_usage_classes
        CHECK (routing._usage_classes_fit(cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                                          reasoning_tokens, provider_cost_usd, input_tokens, output_tokens))
        NOT VALID;

COMMIT;
