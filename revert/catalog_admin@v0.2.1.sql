-- Revert routing_ledger:catalog_admin from pg
--
-- Drops the functions, the audit (its triggers and table) and, if this deploy created
-- it, the role routing_admin. A role still holding privileges in another database of
-- the cluster (another deployment of this package) is kept, with a NOTICE.

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.set_task_floor(text, numeric, text);
DROP FUNCTION routing.upsert_agent(uuid, uuid, text, text, numeric, numeric);
DROP FUNCTION routing.set_model_enabled(text, boolean);
DROP FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric);
DROP TRIGGER catalog_audit ON routing.task_floors;
DROP TRIGGER catalog_audit ON routing.agents;
DROP TRIGGER catalog_audit ON routing.models;
DROP FUNCTION routing._audit_catalog_change();
DROP FUNCTION routing._require_endpoint(text, text, text);
DROP TABLE routing.catalog_changes;
REVOKE USAGE ON SCHEMA routing FROM routing_admin;

DO $$
BEGIN
    DELETE FROM routing._created_roles WHERE rolname = 'routing_admin';
    IF FOUND THEN
        BEGIN
            DROP ROLE IF EXISTS routing_admin;
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role routing_admin is still used elsewhere in this cluster; kept';
        END;
    END IF;
END
$$;

COMMIT;
