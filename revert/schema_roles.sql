-- Revert routing_ledger:schema_roles from pg
--
-- Drops the schema and the roles this deploy created. A role still holding privileges
-- in another database of the cluster (another deployment of this package) is kept,
-- with a NOTICE: dropping it there would break that deployment.

BEGIN;

DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM routing._created_roles ORDER BY rolname LOOP
        EXECUTE format('REVOKE ALL ON SCHEMA routing FROM %I', r);
        BEGIN
            EXECUTE format('DROP ROLE IF EXISTS %I', r);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role % is still used elsewhere in this cluster; kept', r;
        END;
    END LOOP;
END
$$;

DROP TABLE routing._created_roles;
DROP SCHEMA routing;

COMMIT;
