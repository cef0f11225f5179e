-- Verify routing_ledger:write_path on pg

BEGIN;

SELECT error_code, same_model_retries, then_action, base_backoff_ms, max_backoff_ms, give_up_status
  FROM routing.retry_policy WHERE false;
SELECT outcome_created_at FROM routing.inferences WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)',
        'routing.complete_decision(bigint, jsonb, int, int, int, text, jsonb)',
        'routing.fail_inference(bigint, text, text, int, int, int, text, jsonb)',
        'routing.mark_first_token(bigint, int)',
        'routing.heartbeat_inference(bigint, int)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must be SECURITY DEFINER with a pinned search_path';
        ASSERT pg_catalog.has_function_privilege('routing_app', to_regprocedure(f), 'EXECUTE'),
               'routing_app must be able to execute ' || f;
    END LOOP;
    ASSERT to_regprocedure('routing.insert_decision(text, uuid, text, int, int, jsonb)') IS NULL,
           'the v0.1 signature of insert_decision must be gone (no ambiguous overload)';
    ASSERT (SELECT count(*) FROM routing.retry_policy) >= 8, 'the seeded retry policy is missing';
    ASSERT to_regprocedure('routing._expand_candidates(jsonb)') IS NOT NULL, 'routing._expand_candidates is missing';
    ASSERT NOT pg_catalog.has_function_privilege('routing_app', 'routing._expand_candidates(jsonb)', 'EXECUTE'),
           'routing._expand_candidates must be private';
    ASSERT to_regprocedure('routing._route_candidates(jsonb)') IS NULL,
           'routing._route_candidates is renamed routing._expand_candidates (no old name left)';
    ASSERT NOT EXISTS (SELECT FROM unnest((SELECT proconfig FROM pg_catalog.pg_proc
                                             WHERE oid = 'routing.insert_decision(text, uuid, text, int, int, jsonb, boolean)'::regprocedure)) c
                        WHERE c LIKE 'routing.%'),
           'insert_decision must carry no SET clause on a placeholder parameter (only a superuser may store one)';
END
$$;

ROLLBACK;
