-- Verify routing_ledger:schema_roles on pg

BEGIN;

SELECT pg_catalog.has_schema_privilege('routing', 'USAGE');

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_roles
             WHERE rolname IN ('routing_app', 'routing_judge', 'routing_ops', 'routing_readonly')
               AND NOT rolcanlogin) = 4,
           'the four NOLOGIN group roles must exist';
END
$$;

ROLLBACK;
