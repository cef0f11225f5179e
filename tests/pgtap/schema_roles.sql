-- pgTAP for the schema_roles change: schema routing and the four NOLOGIN group roles.
--
-- The roles are cluster-wide and may have existed before the deploy (then the deploy
-- leaves them alone), so this file checks what the contract promises about them, not
-- which deploy created them.
BEGIN;
SELECT plan(16);

SELECT has_schema('routing', 'schema routing exists');
SELECT is(
    (SELECT n.nspowner::regrole::text FROM pg_catalog.pg_namespace n WHERE n.nspname = 'routing'),
    (SELECT d.datdba::regrole::text FROM pg_catalog.pg_database d WHERE d.datname = current_database()),
    'routing is owned by the role that deployed it (the database owner here), not by a group role'
);

SELECT has_role('routing_app', 'group role routing_app exists');
SELECT has_role('routing_judge', 'group role routing_judge exists');
SELECT has_role('routing_ops', 'group role routing_ops exists');
SELECT has_role('routing_readonly', 'group role routing_readonly exists');

-- Group roles: no one logs in as them; members inherit their rights.
SELECT results_eq(
    $$SELECT rolname::text COLLATE "default", rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
        FROM pg_catalog.pg_roles
       WHERE rolname IN ('routing_app', 'routing_judge', 'routing_ops', 'routing_readonly')
       ORDER BY rolname$$,
    $$VALUES ('routing_app', false, false, false, false, false),
             ('routing_judge', false, false, false, false, false),
             ('routing_ops', false, false, false, false, false),
             ('routing_readonly', false, false, false, false, false)$$,
    'the four group roles are NOLOGIN and hold no cluster-wide attribute'
);

-- Every group role can reach the schema; PUBLIC cannot (tables are private).
SELECT schema_privs_are('routing', 'routing_app', ARRAY['USAGE'], 'routing_app has USAGE on routing, nothing more');
SELECT schema_privs_are('routing', 'routing_judge', ARRAY['USAGE'], 'routing_judge has USAGE on routing, nothing more');
SELECT schema_privs_are('routing', 'routing_ops', ARRAY['USAGE'], 'routing_ops has USAGE on routing, nothing more');
SELECT schema_privs_are('routing', 'routing_readonly', ARRAY['USAGE'], 'routing_readonly has USAGE on routing, nothing more');
SELECT is(
    (SELECT count(*)::int
       FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a
      WHERE n.nspname = 'routing' AND a.grantee = 0),
    0,
    'PUBLIC has no privilege on schema routing'
);

-- The bookkeeping that lets revert drop exactly the roles this deploy created.
SELECT has_table('routing', '_created_roles', 'routing._created_roles records the roles the deploy created');
SELECT col_is_pk('routing', '_created_roles', 'rolname', 'one row per created role');
SELECT is(
    (SELECT count(*)::int FROM routing._created_roles
      WHERE rolname NOT IN ('routing_app', 'routing_judge', 'routing_ops', 'routing_readonly', 'routing_admin')),
    0,
    '_created_roles never names a role other than the group roles (revert drops only those; routing_admin comes with catalog_admin)'
);
SELECT table_privs_are('routing', '_created_roles', 'routing_app', ARRAY[]::text[],
    'routing_app has no privilege on routing._created_roles');

SELECT * FROM finish();
ROLLBACK;
