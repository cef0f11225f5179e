-- Revert routing_ledger:usage_classes from pg
--
-- The CHECK as @v0.3.0 left it: the expression written out, validated. Adding a validated
-- CHECK scans the table under this transaction's ACCESS EXCLUSIVE lock (every row passes:
-- the test is the same). Then the function, which nothing else calls.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_usage_classes,
    ADD CONSTRAINT inference_usage_classes
        CHECK (cache_read_tokens >= 0 AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0
               AND reasoning_tokens >= 0 AND provider_cost_usd >= 0
               AND coalesce(cache_read_tokens, 0)::bigint + coalesce(cache_write_tokens, 0)
                   + coalesce(cache_write_1h_tokens, 0) <= input_tokens
               AND reasoning_tokens <= output_tokens);

UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'inference_usage_classes';

-- squawk-ignore ban-drop-function
DROP FUNCTION routing._usage_classes_fit(int, int, int, int, numeric, int, int);

COMMIT;
