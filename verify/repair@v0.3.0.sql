-- Verify routing_ledger:repair on pg
--
-- v0.2: the functions check their bounds first (a window over 100 years is 22023; v0.1.0
-- let it through).

BEGIN;

SELECT run_id, kind, started_at, run_by, match_window, applied, ambiguous, no_match, rolled_back_at
  FROM routing.repair_runs WHERE false;
SELECT run_id, table_name, row_id, row_data, after_data, taken_at FROM routing.repair_backup WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing.repair_orphans(interval, boolean)', 'routing.rollback_repair(bigint)',
                             'routing.close_unmatched_orphans(interval, interval, boolean, timestamptz)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must be SECURITY DEFINER with a pinned search_path';
        ASSERT pg_catalog.has_function_privilege('routing_ops', f, 'EXECUTE'), 'routing_ops must be able to run ' || f;
    END LOOP;
    ASSERT pg_catalog.to_regprocedure('routing._require_interval(text, text, interval, interval, interval, boolean)') IS NOT NULL,
           'routing._require_interval (change argument_checks) is missing';
    BEGIN
        PERFORM routing.repair_orphans('101 years', false);
        RAISE EXCEPTION 'repair_orphans accepted a window over 100 years: the v0.2 bounds are missing';
    EXCEPTION WHEN invalid_parameter_value THEN
        NULL;
    END;
    BEGIN
        PERFORM routing.close_unmatched_orphans('3 seconds', '1 hour', false, 'infinity');
        RAISE EXCEPTION 'close_unmatched_orphans accepted p_as_of infinity: the v0.2 bounds are missing';
    EXCEPTION WHEN invalid_parameter_value THEN
        NULL;
    END;
END
$$;

ROLLBACK;
