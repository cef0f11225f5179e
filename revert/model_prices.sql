-- Revert routing_ledger:model_prices from pg
--
-- Back to routing._attempt_cost as released at @v0.3.0 (deploy/model_prices@v0.3.0.sql):
-- the same costs, computed as released.

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
    v_cr  bigint := coalesce(p_cache_read_tokens, 0)::bigint;
    v_cw  bigint := coalesce(p_cache_write_tokens, 0)::bigint;
    v_ch  bigint := coalesce(p_cache_write_1h_tokens, 0)::bigint;
    v_in  numeric;
    v_out numeric;
    v_rcr numeric;
    v_rcw numeric;
    v_rch numeric;
BEGIN
    IF p_input_tokens IS NULL OR p_output_tokens IS NULL THEN
        RETURN NULL;
    END IF;
    -- One backward index probe per class used (routing._rate_in_force's query, written out
    -- to save a call each; measured: a statement with the cache probes under CASE costs
    -- twice this one): input and output always, in one statement ...
    SELECT (SELECT p.usd_per_mtok FROM routing.model_prices p
             WHERE p.model_slug = p_model_slug AND p.token_class = 'input'
               AND p.min_input_tokens <= p_input_tokens AND p.effective_from <= p_created_at
             ORDER BY p.min_input_tokens DESC, p.effective_from DESC LIMIT 1),
           (SELECT p.usd_per_mtok FROM routing.model_prices p
             WHERE p.model_slug = p_model_slug AND p.token_class = 'output'
               AND p.min_input_tokens <= p_input_tokens AND p.effective_from <= p_created_at
             ORDER BY p.min_input_tokens DESC, p.effective_from DESC LIMIT 1)
      INTO v_in, v_out;
    -- ... and the cache classes only for an attempt that has cache tokens.
    IF v_cr + v_cw + v_ch > 0 THEN
        v_rcr := routing._rate_in_force(p_model_slug, 'cache_read', p_created_at, p_input_tokens);
        v_rcw := routing._rate_in_force(p_model_slug, 'cache_write', p_created_at, p_input_tokens);
        v_rch := routing._rate_in_force(p_model_slug, 'cache_write_1h', p_created_at, p_input_tokens);
    END IF;
    RETURN pg_catalog.round(((p_input_tokens - v_cr - v_cw - v_ch) * v_in
                             + v_cr * coalesce(v_rcr, v_in)
                             + v_cw * coalesce(v_rcw, v_in)
                             + v_ch * coalesce(v_rch, v_in)
                             + p_output_tokens::bigint * v_out) / 1e6, 10);
END
$$;

-- The comment as released.
COMMENT ON FUNCTION routing._attempt_cost(text, timestamptz, int, int, int, int, int) IS
    'An attempt''s cost: uncached input at the input rate, each cache class at its rate (else the input rate), output (reasoning included) at the output rate, at the rates in force at p_created_at for the tier of p_input_tokens, rounded to 10 decimals; NULL when a total or the input/output rate is unknown.';

COMMIT;
