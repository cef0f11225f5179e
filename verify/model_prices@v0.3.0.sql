-- Verify routing_ledger:model_prices on pg

BEGIN;

SELECT model_slug, token_class, usd_per_mtok, min_input_tokens, effective_from, created_at
  FROM routing.model_prices
 WHERE false;

DO $$
BEGIN
    ASSERT (SELECT p.prosecdef AND p.proconfig IS NOT NULL
              FROM pg_catalog.pg_proc p
             WHERE p.oid = 'routing.set_model_price(text, text, numeric, timestamptz, int)'::regprocedure),
           'routing.set_model_price is not SECURITY DEFINER with a pinned search_path';
    ASSERT NOT has_function_privilege('public', 'routing.set_model_price(text, text, numeric, timestamptz, int)', 'EXECUTE'),
           'PUBLIC may execute routing.set_model_price';
    ASSERT routing._attempt_cost(NULL, now(), NULL, 0) IS NULL, 'routing._attempt_cost is missing';
    ASSERT routing._projected_cost(10, 0, 0.02, 1) = 0.0000002, 'routing._projected_cost does not keep 10 decimals';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = 'routing.models'::regclass AND t.tgname = 'sync_model_prices'),
           'the trigger sync_model_prices on routing.models is missing';
END
$$;

ROLLBACK;
