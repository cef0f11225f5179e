-- Revert routing_ledger:schema_roles from pg
--
-- Drops the schema and the roles this deploy created. A role still holding privileges
-- in another database of the cluster (another deployment of this package) is kept,
-- with a NOTICE: dropping it there would break that deployment.

BEGIN;

SET LOCAL lock_timeout = '5s';

DO $$
DECLARE
    v_roles name[];
    r       name;
BEGIN
    SELECT coalesce(array_agg(rolname ORDER BY rolname), '{}') INTO v_roles FROM routing._created_roles;

    DROP TABLE routing._created_roles;
    DROP SCHEMA routing;

    FOREACH r IN ARRAY v_roles LOOP
        BEGIN
            EXECUTE format('DROP ROLE IF EXISTS %I', r);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role % is still used elsewhere in this cluster; kept', r;
        END;
    END LOOP;
END
$$;

COMMIT;
