-- pgTAP for the task_endpoints change: routing.task_floors.endpoint (domain
-- routing.endpoint, NOT NULL, default chat), seeded embed -> embeddings and every other
-- seeded task -> chat, and what the router makes of it: an embed request goes to an
-- embeddings model, the other tasks to chat models, a task type not listed to chat.
-- (The deploy seeds only when it adds the column, so a re-run keeps an operator's
-- choice; re-running a deploy script is not possible inside this test's transaction.)
-- Runs on the partitioned template too (make test-partitioned): it reads the ledger only
-- through the functions.
BEGIN;
SELECT plan(16);

----------------------------------------------------------------------------- structure

SELECT has_column('routing', 'task_floors', 'endpoint', 'routing.task_floors.endpoint exists');
SELECT col_type_is('routing', 'task_floors', 'endpoint', 'routing', 'endpoint',
    'task_floors.endpoint is of the domain routing.endpoint');
SELECT col_not_null('routing', 'task_floors', 'endpoint', 'task_floors.endpoint is NOT NULL');
SELECT col_default_is('routing', 'task_floors', 'endpoint', 'chat', 'task_floors.endpoint defaults to chat');
SELECT isnt(col_description('routing.task_floors'::regclass,
                            (SELECT attnum FROM pg_attribute WHERE attrelid = 'routing.task_floors'::regclass AND attname = 'endpoint')),
    NULL, 'the column carries a COMMENT');
SELECT results_eq(
    $$SELECT task_type, endpoint::text FROM routing.task_floors
       WHERE task_type IN ('reasoning', 'code', 'tool_use', 'general', 'chat', 'extraction', 'embed')
       ORDER BY task_type$$,
    $$VALUES ('chat', 'chat'), ('code', 'chat'), ('embed', 'embeddings'), ('extraction', 'chat'),
             ('general', 'chat'), ('reasoning', 'chat'), ('tool_use', 'chat')$$,
    'seeded: embed needs embeddings, every other seeded task chat');
SELECT throws_ok(
    $$UPDATE routing.task_floors SET endpoint = 'images' WHERE task_type = 'chat'$$,
    '23514', NULL, 'an endpoint outside chat / embeddings is refused by the domain');
SELECT throws_ok(
    $$UPDATE routing.task_floors SET endpoint = NULL WHERE task_type = 'chat'$$,
    '23502', NULL, 'a NULL endpoint is refused');
SELECT is(
    (SELECT endpoint::text FROM routing.task_floors WHERE task_type = 'chat'), 'chat',
    'nothing was changed by the refused updates');
INSERT INTO routing.task_floors (task_type, min_quality) VALUES ('te-new-task', 0.5);
SELECT is((SELECT endpoint::text FROM routing.task_floors WHERE task_type = 'te-new-task'), 'chat',
    'a task floor added without an endpoint needs chat');

----------------------------------------------------------------------------- the router

-- te_embed is the cheapest model of all but serves embeddings only.
DELETE FROM routing.model_cooldowns;
DELETE FROM routing.model_task_quality;
UPDATE routing.models SET enabled = false;
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed, endpoint)
VALUES ('te_chat',  'p1', 'chat-1',  1,    2,    0.95, true, 'chat'),
       ('te_embed', 'p2', 'embed-1', 0.01, 0.01, 0.95, true, 'embeddings');
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000005c1', 'f0000000-0000-4000-8000-0000000005c1', 'task endpoints');

SELECT results_eq(
    $$SELECT t.task_type, r ->> 'endpoint', r ->> 'chosen_model_slug'
        FROM (VALUES ('embed', 0), ('general', 100), ('chat', 100), ('reasoning', 100)) t (task_type, max_tokens),
             routing.choose_route('a0000000-0000-4000-8000-0000000005c1', t.task_type, 100, t.max_tokens) r
       ORDER BY 1$$,
    $$VALUES ('chat', 'chat', 'te_chat'), ('embed', 'embeddings', 'te_embed'),
             ('general', 'chat', 'te_chat'), ('reasoning', 'chat', 'te_chat')$$,
    'embed routes to the embeddings model, the other seeded tasks to the chat model (however cheap te_embed is)');
SELECT is(
    routing.choose_route('a0000000-0000-4000-8000-0000000005c1', 'te-unlisted-task', 100, 100) ->> 'endpoint',
    'chat', 'a task type not listed needs chat');
SELECT is(
    routing.choose_route('a0000000-0000-4000-8000-0000000005c1', 'te-unlisted-task', 100, 100) ->> 'chosen_model_slug',
    'te_chat', 'a task type not listed is routed to the chat model');
SELECT results_eq(
    $$SELECT d.model_slug, d.decision_rule
        FROM routing.insert_decision('te-1', 'a0000000-0000-4000-8000-0000000005c1', 'embed', 100, 0) d$$,
    $$VALUES ('te_embed', 'cheapest_clearing_floor')$$,
    'insert_decision for embed dispatches to the embeddings model');
SELECT results_eq(
    $$SELECT d.model_slug, d.decision_rule
        FROM routing.insert_decision('te-2', 'a0000000-0000-4000-8000-0000000005c1', 'te-unlisted-task', 100, 100) d$$,
    $$VALUES ('te_chat', 'cheapest_clearing_floor')$$,
    'insert_decision for a task type not listed dispatches to the chat model');

-- The router follows the table: an operator re-points a task type.
UPDATE routing.task_floors SET endpoint = 'embeddings' WHERE task_type = 'extraction';
SELECT is(
    routing.choose_route('a0000000-0000-4000-8000-0000000005c1', 'extraction', 100, 0) ->> 'chosen_model_slug',
    'te_embed', 'extraction re-pointed to embeddings routes to the embeddings model');

SELECT * FROM finish();
ROLLBACK;
