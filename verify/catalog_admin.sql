-- Verify routing_ledger:catalog_admin on pg

BEGIN;

SELECT id, changed_at, changed_by, via, table_name, operation, row_key, before, after
  FROM routing.catalog_changes WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    ASSERT (SELECT NOT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = 'routing_admin'),
           'the NOLOGIN group role routing_admin must exist';
    FOREACH f IN ARRAY ARRAY[
        'routing.upsert_model(text,text,text,numeric,numeric,numeric,boolean,text,boolean,integer,numeric)',
        'routing.set_model_enabled(text,boolean)',
        'routing.upsert_agent(uuid,uuid,text,text,numeric,numeric)',
        'routing.set_task_floor(text,numeric,text)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must be SECURITY DEFINER with a pinned search_path';
        ASSERT NOT has_function_privilege('public', to_regprocedure(f), 'EXECUTE'), f || ' must not be executable by PUBLIC';
        ASSERT has_function_privilege('routing_admin', to_regprocedure(f), 'EXECUTE'), 'routing_admin must execute ' || f;
        ASSERT NOT EXISTS (SELECT FROM unnest((SELECT proconfig FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f))) c
                            WHERE c LIKE 'routing.%'),
               f || ' must carry no SET clause on a placeholder parameter (only a superuser may store one)';
    END LOOP;
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger
             WHERE tgname = 'catalog_audit' AND NOT tgisinternal
               AND tgrelid IN ('routing.models'::regclass, 'routing.agents'::regclass, 'routing.task_floors'::regclass)) = 3,
           'the catalog_audit triggers are missing';
END
$$;

ROLLBACK;
