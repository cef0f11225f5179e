-- Verify routing_ledger:ops_metrics on pg

BEGIN;

SELECT metric, ordinal, unit, labels, description FROM routing.ops_metric_families WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing.ops_metrics(interval,timestamptz)', 'routing.describe_metrics()'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must be SECURITY DEFINER with a pinned search_path';
        ASSERT NOT has_function_privilege('public', to_regprocedure(f), 'EXECUTE'), f || ' must not be executable by PUBLIC';
    END LOOP;
    ASSERT (SELECT prosrc LIKE '%routing._outcome_awaits_judge(%' FROM pg_catalog.pg_proc
             WHERE oid = 'routing.ops_metrics(interval,timestamptz)'::regprocedure),
           'routing.ops_metrics must find the judge queue''s head with routing._outcome_awaits_judge';
    -- Every integrity metric reaches a scrape.
    ASSERT (SELECT count(*) FROM routing.ops_metrics() WHERE metric = 'integrity')
         = (SELECT count(*) FROM routing.integrity_metrics),
           'ops_metrics must report every integrity metric';
END
$$;

ROLLBACK;
