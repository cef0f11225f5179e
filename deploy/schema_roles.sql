-- Deploy routing_ledger:schema_roles to pg
--
-- The schema that holds the whole package, and the four NOLOGIN group roles the
-- contract names. Roles are cluster-wide, so they are created only when missing and
-- the ones this change created are remembered: revert drops exactly those.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE SCHEMA IF NOT EXISTS routing;
COMMENT ON SCHEMA routing IS
    'routing-ledger: the LLM router''s decisions and outcomes. Tables are private; the functions are the interface.';

CREATE TABLE IF NOT EXISTS routing._created_roles (
    rolname    name PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE routing._created_roles IS
    'Group roles created by the schema_roles deploy (not pre-existing); its revert drops exactly these.';

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['routing_app', 'routing_judge', 'routing_ops', 'routing_readonly'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            INSERT INTO routing._created_roles (rolname) VALUES (r) ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON SCHEMA routing FROM PUBLIC;
GRANT USAGE ON SCHEMA routing TO routing_app, routing_judge, routing_ops, routing_readonly;
REVOKE ALL ON TABLE routing._created_roles FROM PUBLIC;
GRANT SELECT ON TABLE routing._created_roles TO routing_readonly;

COMMIT;
