-- Verify routing_ledger:write_path on pg

BEGIN;

SELECT error_code, same_model_retries, then_action, base_backoff_ms, max_backoff_ms, give_up_status
  FROM routing.retry_policy WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'routing.insert_decision(text, uuid, text, int, int, jsonb)',
        'routing.complete_decision(bigint, jsonb, int, int, int)',
        'routing.fail_inference(bigint, text, text, int, int)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must be SECURITY DEFINER with a pinned search_path';
    END LOOP;
    ASSERT (SELECT count(*) FROM routing.retry_policy) >= 8, 'the seeded retry policy is missing';
END
$$;

ROLLBACK;
