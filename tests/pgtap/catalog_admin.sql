-- pgTAP for the catalog_admin change: role routing_admin, the audited catalog functions,
-- and who may do what (admin cannot write tables; app, ops, judge cannot administer).
BEGIN;
SELECT plan(51);

------------------------------------------------------------------------- structure

SELECT has_role('routing_admin', 'group role routing_admin exists');
SELECT is((SELECT rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls
             FROM pg_catalog.pg_roles WHERE rolname = 'routing_admin'),
          false, 'routing_admin is NOLOGIN and holds no cluster-wide attribute');
SELECT schema_privs_are('routing', 'routing_admin', ARRAY['USAGE'], 'routing_admin has USAGE on routing, nothing more');

SELECT has_function('routing', 'upsert_model',
    ARRAY['text', 'text', 'text', 'numeric', 'numeric', 'numeric', 'boolean', 'text', 'boolean', 'integer', 'numeric'],
    'upsert_model has the contract''s signature');
SELECT has_function('routing', 'set_model_enabled', ARRAY['text', 'boolean'], 'set_model_enabled(p_slug, p_enabled)');
SELECT has_function('routing', 'upsert_agent', ARRAY['uuid', 'uuid', 'text', 'text', 'numeric', 'numeric'],
    'upsert_agent has the contract''s signature');
SELECT has_function('routing', 'set_task_floor', ARRAY['text', 'numeric', 'text'], 'set_task_floor(p_task_type, p_min_quality, p_endpoint)');

-- Every catalog function: SECURITY DEFINER, pinned search_path, routing_admin only.
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.oid IN ('routing.upsert_model(text,text,text,numeric,numeric,numeric,boolean,text,boolean,integer,numeric)'::regprocedure,
                       'routing.set_model_enabled(text,boolean)'::regprocedure,
                       'routing.upsert_agent(uuid,uuid,text,text,numeric,numeric)'::regprocedure,
                       'routing.set_task_floor(text,numeric,text)'::regprocedure)
         AND NOT (p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, routing, pg_temp'])$$,
    'the catalog functions are SECURITY DEFINER with a pinned search_path');
SELECT results_eq(
    $$SELECT r.rolname::text COLLATE "default" FROM pg_catalog.pg_roles r
       WHERE r.rolname IN ('routing_app', 'routing_judge', 'routing_ops', 'routing_readonly', 'routing_admin', 'public')
         AND has_function_privilege(r.oid, 'routing.upsert_model(text,text,text,numeric,numeric,numeric,boolean,text,boolean,integer,numeric)', 'EXECUTE')
       ORDER BY 1$$,
    $$VALUES ('routing_admin')$$,
    'of the group roles only routing_admin may run upsert_model');
SELECT function_privs_are('routing', 'set_model_enabled', ARRAY['text', 'boolean'], 'routing_app', ARRAY[]::text[], 'routing_app may not run set_model_enabled');
SELECT function_privs_are('routing', 'upsert_agent', ARRAY['uuid', 'uuid', 'text', 'text', 'numeric', 'numeric'], 'routing_ops', ARRAY[]::text[], 'routing_ops may not run upsert_agent');
SELECT function_privs_are('routing', 'set_task_floor', ARRAY['text', 'numeric', 'text'], 'routing_judge', ARRAY[]::text[], 'routing_judge may not run set_task_floor');
SELECT function_privs_are('routing', 'set_task_floor', ARRAY['text', 'numeric', 'text'], 'routing_admin', ARRAY['EXECUTE'], 'routing_admin may run set_task_floor');
SELECT is(has_function_privilege('public', 'routing._audit_catalog_change()', 'EXECUTE'), false, 'PUBLIC cannot run the audit trigger function');

-- routing_admin may execute the catalog functions and nothing else.
SELECT is_empty(
    $$SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
       WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind IN ('r', 'v', 'p', 'S')
         AND (has_table_privilege('routing_admin', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
              OR (c.relkind = 'S' AND has_sequence_privilege('routing_admin', c.oid, 'USAGE')))$$,
    'routing_admin holds no privilege on any table, view or sequence');
SELECT results_eq(
    $$SELECT p.proname::text COLLATE "default" FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace AND has_function_privilege('routing_admin', p.oid, 'EXECUTE')
       ORDER BY 1$$,
    $$VALUES ('set_model_enabled'), ('set_model_price'), ('set_task_floor'), ('upsert_agent'), ('upsert_model')$$,
    'the routing functions routing_admin may run are exactly the catalog functions');

SELECT has_table('routing', 'catalog_changes', 'the audit table exists');
SELECT table_privs_are('routing', 'catalog_changes', 'routing_readonly', ARRAY['SELECT'], 'routing_readonly reads the audit');
SELECT table_privs_are('routing', 'catalog_changes', 'routing_admin', ARRAY[]::text[], 'routing_admin cannot touch the audit');
SELECT table_privs_are('routing', 'catalog_changes', 'routing_app', ARRAY[]::text[], 'routing_app cannot read the audit');

------------------------------------------------------------------------- behaviour (as routing_admin)

SET ROLE routing_admin;

SELECT is(routing.upsert_model('tap-a', 'tapco', 'a-1', 0.5, 1.5, 0.7, true), 'inserted', 'a new model is inserted');
SELECT is(routing.upsert_model('tap-a', 'tapco', 'a-1', 0.5, 1.5, 0.7, true), 'unchanged', 'the same call again changes nothing');
SELECT is(routing.upsert_model('tap-a', 'tapco', 'a-1', 0.5, 2.0, 0.7, true), 'updated', 'a price change is an update');
SELECT is(routing.set_model_enabled('tap-a', false), 'updated', 'disabling is an update');
SELECT is(routing.set_model_enabled('tap-a', false), 'unchanged', 'disabling twice changes nothing');
SELECT is(routing.upsert_agent('a0000000-0000-4000-8000-00000000ad01', 'f0000000-0000-4000-8000-00000000ad01', 'tap admin agent'),
          'inserted', 'a new agent is inserted, active by default');
SELECT is(routing.upsert_agent('a0000000-0000-4000-8000-00000000ad01', 'f0000000-0000-4000-8000-00000000ad01', 'tap admin agent', 'suspended', 0.01, 5),
          'updated', 'suspending with caps is an update');
SELECT is(routing.set_task_floor('tap_task', 0.61), 'inserted', 'a new task floor is inserted');
SELECT is(routing.set_task_floor('chat', 0.60), 'updated', 'a seeded floor is updated');

-- Bad arguments: 22023, naming the argument, and nothing written.
SELECT throws_ok($$SELECT routing.upsert_model('tap-b', 'tapco', 'b', -0.1, 1, 0.5, true)$$, '22023', NULL, 'a negative price is refused');
SELECT throws_ok($$SELECT routing.upsert_model('tap-b', 'tapco', 'b', 'NaN', 1, 0.5, true)$$, '22023', NULL, 'a NaN price is refused');
SELECT throws_ok($$SELECT routing.upsert_model('tap-b', 'tapco', 'b', 0.1, 1, 1.01, true)$$, '22023', NULL, 'q_prior above 1 is refused');
SELECT throws_ok($$SELECT routing.upsert_model('tap-b', 'tapco', 'b', 0.1, 1, 0.5, true, 'video')$$, '22023',
                 'upsert_model: unknown p_endpoint ''video''', 'an unknown endpoint is refused by name');
SELECT throws_ok($$SELECT routing.upsert_model('', 'tapco', 'b', 0.1, 1, 0.5, true)$$, '22023', NULL, 'an empty slug is refused');
SELECT throws_ok($$SELECT routing.upsert_model('tap-b', 'tapco', 'b', 0.1, 1, 0.5, NULL)$$, '22023',
                 'upsert_model: p_m_allowed must not be NULL', 'a NULL m_allowed is refused by name');
SELECT throws_ok($$SELECT routing.upsert_agent('a0000000-0000-4000-8000-00000000ad02', 'f0000000-0000-4000-8000-00000000ad01', 'x', 'deleted')$$,
                 '22023', 'upsert_agent: unknown p_status ''deleted''', 'an unknown agent status is refused');
SELECT throws_ok($$SELECT routing.upsert_agent('a0000000-0000-4000-8000-00000000ad02', 'f0000000-0000-4000-8000-00000000ad01', 'x', 'active', -1)$$,
                 '22023', NULL, 'a negative cap is refused');
SELECT throws_ok($$SELECT routing.set_task_floor('tap_task', 1.5)$$, '22023', NULL, 'a floor above 1 is refused');
SELECT throws_ok($$SELECT routing.set_task_floor(repeat('t', 65), 0.5)$$, '22023', NULL, 'a task type over 64 characters is refused');
SELECT throws_ok($$SELECT routing.set_model_enabled('tap-nope', true)$$, 'P0002', NULL, 'an unknown model is P0002');

-- routing_admin cannot write (or read) the tables directly.
SELECT throws_ok($$UPDATE routing.models SET price_in_per_mtok_usd = 0 WHERE slug = 'tap-a'$$, '42501', NULL,
                 'routing_admin cannot update routing.models directly');
SELECT throws_ok($$INSERT INTO routing.task_floors (task_type, min_quality) VALUES ('tap_direct', 0.5)$$, '42501', NULL,
                 'routing_admin cannot insert into routing.task_floors directly');

RESET ROLE;

------------------------------------------------------------------------- the audit

SELECT results_eq(
    $$SELECT via, table_name, operation, row_key, changed_by = session_user::text
        FROM routing.catalog_changes WHERE table_name <> 'model_prices' ORDER BY id$$,
    $$VALUES ('upsert_model', 'models', 'INSERT', 'tap-a', true),
             ('upsert_model', 'models', 'UPDATE', 'tap-a', true),
             ('set_model_enabled', 'models', 'UPDATE', 'tap-a', true),
             ('upsert_agent', 'agents', 'INSERT', 'a0000000-0000-4000-8000-00000000ad01', true),
             ('upsert_agent', 'agents', 'UPDATE', 'a0000000-0000-4000-8000-00000000ad01', true),
             ('set_task_floor', 'task_floors', 'INSERT', 'tap_task', true),
             ('set_task_floor', 'task_floors', 'UPDATE', 'chat', true)$$,
    'one audit row per change (none for the unchanged calls or the refused ones), by the session user');
SELECT results_eq(
    $$SELECT before->>'price_out_per_mtok_usd', after->>'price_out_per_mtok_usd'
        FROM routing.catalog_changes WHERE table_name = 'models' AND operation = 'UPDATE' AND via = 'upsert_model'$$,
    $$VALUES ('1.5', '2.0')$$,
    'a price change keeps the row before and after');
SELECT ok((SELECT before IS NULL AND after->>'slug' = 'tap-a' FROM routing.catalog_changes WHERE operation = 'INSERT' AND row_key = 'tap-a' AND table_name = 'models'),
          'an insert has no before-image');

-- A direct write by the owner is audited too, as direct, also right after a function call.
SELECT is(routing.set_task_floor('tap_task', 0.62), 'updated', 'the floor is updated through the function');
UPDATE routing.task_floors SET min_quality = 0.63 WHERE task_type = 'tap_task';
DELETE FROM routing.task_floors WHERE task_type = 'tap_task';
SELECT results_eq(
    $$SELECT via, operation, (before->>'min_quality')::numeric, (after->>'min_quality')::numeric
        FROM routing.catalog_changes WHERE row_key = 'tap_task' ORDER BY id OFFSET 1$$,
    $$VALUES ('set_task_floor', 'UPDATE', 0.61, 0.62), ('direct', 'UPDATE', 0.62, 0.63), ('direct', 'DELETE', 0.63, NULL)$$,
    'direct updates and deletes are audited as direct, after a function call in the same transaction too');

SET ROLE routing_readonly;
SELECT ok((SELECT count(*) FROM routing.catalog_changes) > 0, 'routing_readonly reads the audit');
RESET ROLE;

-- The other roles cannot administer.
SET ROLE routing_app;
SELECT throws_ok($$SELECT routing.upsert_model('tap-c', 'tapco', 'c', 0.1, 1, 0.5, true)$$, '42501', NULL, 'routing_app cannot run upsert_model');
SELECT throws_ok($$SELECT routing.set_task_floor('chat', 0.1)$$, '42501', NULL, 'routing_app cannot run set_task_floor');
RESET ROLE;
SET ROLE routing_ops;
SELECT throws_ok($$SELECT routing.set_model_enabled('tap-a', true)$$, '42501', NULL, 'routing_ops cannot run set_model_enabled');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
