-- Deploy routing_ledger:model_prices to pg
-- requires: model_prices@v0.3.0
--
-- What an attempt costs, computed on every completion: routing._attempt_cost. Prices, the
-- table, its migration and triggers, the audit, set_model_price and the router's rate
-- readers are unchanged and stay where they were defined (deploy/model_prices@v0.3.0.sql,
-- whose header states the pricing rules); this change re-defines the one function.
--
-- - routing._attempt_cost is the one definition of an attempt's cost: uncached input
--   (input_tokens less the three cache classes) at the input rate, each cache class at
--   its own rate or else the request's input rate, output (reasoning included) at the
--   output rate, all at the rates in force at the attempt's created_at and of its tier,
--   summed and rounded once to 10 decimals. NULL when either total is unknown or the
--   model has no input or output rate then: an unknown cost is never 0.
-- - An attempt with no cache tokens (most of them) is priced in one statement; the same
--   sum, the cache terms being 0.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing._attempt_cost(
    p_model_slug            text,
    p_created_at            timestamptz,
    p_input_tokens          int,
    p_output_tokens         int,
    p_cache_read_tokens     int DEFAULT NULL,
    p_cache_write_tokens    int DEFAULT NULL,
    p_cache_write_1h_tokens int DEFAULT NULL
) RETURNS numeric
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
    v_cr  bigint;
    v_cw  bigint;
    v_ch  bigint;
    v_in  numeric;
    v_out numeric;
BEGIN
    IF p_input_tokens IS NULL OR p_output_tokens IS NULL THEN
        RETURN NULL;
    END IF;
    -- No cache tokens (most attempts): input and output at their rates, in one statement
    -- (one backward probe of the primary key per class: routing._rate_in_force's query,
    -- written out to save a call each).
    IF coalesce(p_cache_read_tokens, 0) = 0 AND coalesce(p_cache_write_tokens, 0) = 0
       AND coalesce(p_cache_write_1h_tokens, 0) = 0 THEN
        RETURN (SELECT pg_catalog.round(
                           (p_input_tokens::bigint
                            * (SELECT p.usd_per_mtok FROM routing.model_prices p
                                WHERE p.model_slug = p_model_slug AND p.token_class = 'input'
                                  AND p.min_input_tokens <= p_input_tokens AND p.effective_from <= p_created_at
                                ORDER BY p.min_input_tokens DESC, p.effective_from DESC LIMIT 1)
                            + p_output_tokens::bigint
                            * (SELECT p.usd_per_mtok FROM routing.model_prices p
                                WHERE p.model_slug = p_model_slug AND p.token_class = 'output'
                                  AND p.min_input_tokens <= p_input_tokens AND p.effective_from <= p_created_at
                                ORDER BY p.min_input_tokens DESC, p.effective_from DESC LIMIT 1)) / 1e6, 10));
    END IF;
    -- Cache tokens: each cache class at its own rate, or else the request's input rate.
    v_cr  := coalesce(p_cache_read_tokens, 0)::bigint;
    v_cw  := coalesce(p_cache_write_tokens, 0)::bigint;
    v_ch  := coalesce(p_cache_write_1h_tokens, 0)::bigint;
    v_in  := routing._rate_in_force(p_model_slug, 'input', p_created_at, p_input_tokens);
    v_out := routing._rate_in_force(p_model_slug, 'output', p_created_at, p_input_tokens);
    RETURN pg_catalog.round(((p_input_tokens - v_cr - v_cw - v_ch) * v_in
                             + v_cr * coalesce(routing._rate_in_force(p_model_slug, 'cache_read', p_created_at, p_input_tokens), v_in)
                             + v_cw * coalesce(routing._rate_in_force(p_model_slug, 'cache_write', p_created_at, p_input_tokens), v_in)
                             + v_ch * coalesce(routing._rate_in_force(p_model_slug, 'cache_write_1h', p_created_at, p_input_tokens), v_in)
                             + p_output_tokens::bigint * v_out) / 1e6, 10);
END
$$;

COMMENT ON FUNCTION routing._attempt_cost(text, timestamptz, int, int, int, int, int) IS
    'An attempt''s cost: uncached input at the input rate, each cache class at its rate (else the input rate), output (reasoning included) at the output rate, as in force at p_created_at for the tier of p_input_tokens, to 10 decimals; NULL when a total or the input/output rate is unknown.';

REVOKE ALL ON FUNCTION routing._attempt_cost(text, timestamptz, int, int, int, int, int) FROM PUBLIC;

COMMIT;
