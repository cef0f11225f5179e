-- pgTAP for the catalog change: models, task_floors (seeded), agents, settings.
BEGIN;
SELECT plan(32);

SELECT has_table('routing', 'models', 'routing.models exists');
SELECT has_table('routing', 'task_floors', 'routing.task_floors exists');
SELECT has_table('routing', 'agents', 'routing.agents exists');
SELECT has_table('routing', 'settings', 'routing.settings exists');

-- The contract's columns with their types (more columns are allowed, so this compares
-- only the named ones: a missing column or a changed type shows up as a diff row).
SELECT results_eq(
    $$SELECT c.column_name::text COLLATE "default", c.data_type::text COLLATE "default"
        FROM information_schema.columns c
       WHERE c.table_schema = 'routing' AND c.table_name = 'models'
         AND c.column_name IN ('slug', 'provider', 'provider_model', 'price_in_per_mtok_usd',
                               'price_out_per_mtok_usd', 'q_prior', 'm_allowed',
                               'expected_latency_ms', 'agentic_index', 'enabled')
       ORDER BY c.column_name$$,
    $$VALUES ('agentic_index', 'numeric'), ('enabled', 'boolean'),
             ('expected_latency_ms', 'integer'), ('m_allowed', 'boolean'),
             ('price_in_per_mtok_usd', 'numeric'), ('price_out_per_mtok_usd', 'numeric'),
             ('provider', 'text'), ('provider_model', 'text'), ('q_prior', 'numeric'),
             ('slug', 'text')$$,
    'routing.models has the contract''s columns with their types'
);
SELECT col_is_pk('routing', 'models', 'slug', 'models: slug is the primary key');
SELECT col_default_is('routing', 'models', 'enabled', 'true', 'models.enabled defaults to true');
-- NULL prices and a NULL q_prior mean "not enrolled", so they must be storable.
SELECT col_is_null('routing', 'models', 'price_in_per_mtok_usd', 'models.price_in_per_mtok_usd may be NULL (not enrolled)');
SELECT col_is_null('routing', 'models', 'price_out_per_mtok_usd', 'models.price_out_per_mtok_usd may be NULL (not enrolled)');
SELECT col_is_null('routing', 'models', 'q_prior', 'models.q_prior may be NULL (not enrolled)');
SELECT col_is_null('routing', 'models', 'm_allowed', 'models.m_allowed may be NULL (a veto like false)');

SELECT results_eq(
    $$SELECT c.column_name::text COLLATE "default", c.data_type::text COLLATE "default"
        FROM information_schema.columns c
       WHERE c.table_schema = 'routing' AND c.table_name = 'task_floors'
         AND c.column_name IN ('task_type', 'min_quality')
       ORDER BY c.column_name$$,
    $$VALUES ('min_quality', 'numeric'), ('task_type', 'text')$$,
    'routing.task_floors has the contract''s columns with their types'
);
SELECT col_is_pk('routing', 'task_floors', 'task_type', 'task_floors: task_type is the primary key');

SELECT results_eq(
    $$SELECT c.column_name::text COLLATE "default", c.data_type::text COLLATE "default"
        FROM information_schema.columns c
       WHERE c.table_schema = 'routing' AND c.table_name = 'agents'
         AND c.column_name IN ('id', 'tenant_id', 'name', 'status', 'per_call_cap_usd', 'daily_cap_usd')
       ORDER BY c.column_name$$,
    $$VALUES ('daily_cap_usd', 'numeric'), ('id', 'uuid'), ('name', 'text'),
             ('per_call_cap_usd', 'numeric'), ('status', 'text'), ('tenant_id', 'uuid')$$,
    'routing.agents has the contract''s columns with their types'
);
SELECT col_is_pk('routing', 'agents', 'id', 'agents: id is the primary key');
SELECT col_is_null('routing', 'agents', 'per_call_cap_usd', 'agents.per_call_cap_usd may be NULL (no cap)');
SELECT col_is_null('routing', 'agents', 'daily_cap_usd', 'agents.daily_cap_usd may be NULL (no cap)');

-- Seeded floors, exactly as the contract lists them and nothing else.
SELECT results_eq(
    $$SELECT task_type, min_quality FROM routing.task_floors ORDER BY task_type$$,
    $$VALUES ('chat', 0.58), ('code', 0.78), ('embed', 0.52), ('extraction', 0.58),
             ('general', 0.68), ('reasoning', 0.88), ('tool_use', 0.78)$$,
    'task_floors is seeded with exactly the contract''s seven floors'
);

-- Settings: one row holding the defaults the contract relies on.
SELECT is((SELECT count(*)::int FROM routing.settings), 1, 'routing.settings holds exactly one row');
SELECT is((SELECT default_min_quality FROM routing.settings), 0.5,
    'settings.default_min_quality is 0.5 (the floor of a task type not listed)');
SELECT ok((SELECT max_attempts >= 4 FROM routing.settings),
    'settings.max_attempts leaves room for the seeded policy (three 429s on one model, then a failover)');
SELECT ok((SELECT rate_limit_cooldown_ms > 0 FROM routing.settings),
    'settings.rate_limit_cooldown_ms seeds a positive default cooldown after a 429 without Retry-After');
SELECT ok((SELECT min_judged_samples >= 1 FROM routing.settings),
    'settings.min_judged_samples is at least 1');
SELECT throws_ok(
    $$INSERT INTO routing.settings (singleton) VALUES (false)$$,
    '23514', NULL,
    'a second settings row is refused (singleton)'
);

-- Value constraints the contract states.
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-00000000000c', 'catalog-test');
SELECT throws_ok(
    $$UPDATE routing.agents SET status = 'paused' WHERE id = '00000000-0000-4000-8000-0000000000c1'$$,
    '23514', NULL,
    'agents.status accepts only active and suspended'
);
SELECT lives_ok(
    $$UPDATE routing.agents SET status = 'suspended' WHERE id = '00000000-0000-4000-8000-0000000000c1'$$,
    'an agent can be suspended'
);
SELECT throws_ok(
    $$INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                  price_out_per_mtok_usd, q_prior, m_allowed)
      VALUES ('bad-q', 'p', 'm', 1, 1, 1.5, true)$$,
    '23514', NULL,
    'models.q_prior outside 0..1 is refused'
);
SELECT lives_ok(
    $$INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                  price_out_per_mtok_usd, q_prior, m_allowed)
      VALUES ('not-enrolled', 'p', 'm', NULL, -1, NULL, NULL)$$,
    'a model that is not enrolled (no price, no q_prior, no m_allowed) can still be catalogued'
);
SELECT is((SELECT enabled FROM routing.models WHERE slug = 'not-enrolled'), true,
    'a model inserted without enabled is enabled');

-- Privileges: the catalog is readable by routing_readonly, private to everyone else.
SELECT table_privs_are('routing', 'models', 'routing_readonly', ARRAY['SELECT'],
    'routing_readonly may only SELECT models');
SELECT table_privs_are('routing', 'agents', 'routing_app', ARRAY[]::text[],
    'routing_app has no privilege on agents (it goes through the functions)');
SELECT is(
    (SELECT count(*)::int
       FROM pg_catalog.pg_class c, aclexplode(c.relacl) a
      WHERE c.oid IN ('routing.models'::regclass, 'routing.task_floors'::regclass,
                      'routing.agents'::regclass, 'routing.settings'::regclass)
        AND a.grantee = 0),
    0,
    'PUBLIC has no privilege on any catalog table'
);

SELECT * FROM finish();
ROLLBACK;
