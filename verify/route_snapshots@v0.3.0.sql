-- Verify routing_ledger:route_snapshots on pg

BEGIN;

SELECT snapshot_key, candidates, dropped, created_at FROM routing.route_snapshots WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'routing._projected_cost(int, int, numeric, numeric)',
        'routing._route_explanation(numeric, text, int, int, timestamptz)',
        'routing._expand_snapshot_list(jsonb, int, int)',
        'routing._full_explanation(jsonb)',
        'routing._route_candidates(jsonb)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT NOT pg_catalog.has_function_privilege('routing_app', to_regprocedure(f), 'EXECUTE'),
               f || ' must be private';
    END LOOP;
    ASSERT to_regprocedure('routing.explain_outcome(bigint)') IS NOT NULL, 'routing.explain_outcome is missing';
    ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc
             WHERE oid = 'routing.explain_outcome(bigint)'::regprocedure),
           'routing.explain_outcome must be SECURITY DEFINER with a pinned search_path';
    ASSERT pg_catalog.has_function_privilege('routing_readonly', 'routing.explain_outcome(bigint)', 'EXECUTE')
       AND pg_catalog.has_function_privilege('routing_ops', 'routing.explain_outcome(bigint)', 'EXECUTE'),
           'routing_readonly and routing_ops must be able to execute routing.explain_outcome';
END
$$;

ROLLBACK;
