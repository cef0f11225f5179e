-- Deploy routing_ledger:usage_classes to pg
-- requires: usage_classes@v0.3.0
--
-- The columns and the CHECK of the released change are in deploy/usage_classes@v0.3.0.sql.
-- This rework keeps the CHECK's test and moves its expression into one function:
-- routing._usage_classes_fit(), PL/pgSQL, IMMUTABLE, the released expression word for word
-- (so it passes and fails the same rows, NULL where it was NULL: a part or total not
-- reported passes).
--
-- Why: every INSERT and UPDATE of an attempt prepares its table's CHECK expressions afresh,
-- from their stored text. The written-out test cost ~85,000 instructions to prepare on each
-- such statement (two to four per lifecycle, ~5 % of a call's instructions in
-- make bench-instructions); a call of a PL/pgSQL function is a small expression to prepare,
-- and its body is compiled once per session.
--
-- The CHECK keeps its name. It is dropped and re-added NOT VALID in one statement (a short
-- ACCESS EXCLUSIVE lock, no scan); the rework of validate_usage_classes validates it under
-- SHARE UPDATE EXCLUSIVE.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing._usage_classes_fit(
    p_cache_read_tokens     int,
    p_cache_write_tokens    int,
    p_cache_write_1h_tokens int,
    p_reasoning_tokens      int,
    p_provider_cost_usd     numeric,
    p_input_tokens          int,
    p_output_tokens         int
) RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN p_cache_read_tokens >= 0 AND p_cache_write_tokens >= 0 AND p_cache_write_1h_tokens >= 0
       AND p_reasoning_tokens >= 0 AND p_provider_cost_usd >= 0
       AND coalesce(p_cache_read_tokens, 0)::bigint + coalesce(p_cache_write_tokens, 0)
           + coalesce(p_cache_write_1h_tokens, 0) <= p_input_tokens
       AND p_reasoning_tokens <= p_output_tokens;
END
$$;

COMMENT ON FUNCTION routing._usage_classes_fit(int, int, int, int, numeric, int, int) IS
    'The CHECK inference_usage_classes: every usage class and the provider''s cost non-negative, cache tokens within input_tokens, reasoning within output_tokens. NULL (passes) where a figure is not reported.';

ALTER TABLE routing.inferences
    DROP CONSTRAINT IF EXISTS inference_usage_classes,
    ADD CONSTRAINT inference_usage_classes
        CHECK (routing._usage_classes_fit(cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                                          reasoning_tokens, provider_cost_usd, input_tokens, output_tokens))
        NOT VALID;

-- On a ledger already partitioned (routing.partition_ledger), the unpartitioned layout's
-- definitions are recorded for unpartition_ledger to put back: record this CHECK as it
-- now reads.
UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'inference_usage_classes';

-- As the vocabularies: a pure predicate, callable by the roles that read the ledger.
REVOKE ALL ON FUNCTION routing._usage_classes_fit(int, int, int, int, numeric, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing._usage_classes_fit(int, int, int, int, numeric, int, int)
    TO routing_judge, routing_readonly;

COMMIT;
