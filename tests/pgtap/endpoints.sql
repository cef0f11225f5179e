-- pgTAP for the endpoints and task_endpoints changes and the reworked router: which API
-- a model serves and a task needs, the router's first gate wrong_endpoint, p_max_tokens
-- 0 for an embeddings task only, and the router's bounds.
BEGIN;
SELECT plan(34);

\ir helpers/error_of.sql
\ir helpers/route_document.sql

----------------------------------------------------------------------------- structure

SELECT has_domain('routing', 'endpoint', 'domain routing.endpoint exists');
SELECT has_column('routing', 'models', 'endpoint', 'routing.models.endpoint exists');
SELECT col_type_is('routing', 'models', 'endpoint', 'routing', 'endpoint', 'models.endpoint is a routing.endpoint');
SELECT col_not_null('routing', 'models', 'endpoint', 'models.endpoint is NOT NULL');
SELECT col_default_is('routing', 'models', 'endpoint', 'chat', 'models.endpoint defaults to chat');
SELECT has_column('routing', 'task_floors', 'endpoint', 'routing.task_floors.endpoint exists');
SELECT col_not_null('routing', 'task_floors', 'endpoint', 'task_floors.endpoint is NOT NULL');
SELECT results_eq(
    $$SELECT task_type, endpoint::text FROM routing.task_floors
       WHERE task_type IN ('reasoning', 'code', 'tool_use', 'general', 'chat', 'extraction', 'embed')
       ORDER BY task_type$$,
    $$VALUES ('chat', 'chat'), ('code', 'chat'), ('embed', 'embeddings'), ('extraction', 'chat'),
             ('general', 'chat'), ('reasoning', 'chat'), ('tool_use', 'chat')$$,
    'seeded: embed needs embeddings, every other seeded task chat');
SELECT throws_ok(
    $$INSERT INTO routing.models (slug, provider, provider_model, endpoint) VALUES ('x-img', 'p', 'm', 'images')$$,
    '23514', NULL, 'an endpoint outside chat / embeddings is refused by the domain');

----------------------------------------------------------------------------- fixture

DELETE FROM routing.model_cooldowns;
DELETE FROM routing.model_task_quality;
DELETE FROM routing.models;
-- e_cheap is the cheapest model of all, but serves embeddings only; e_noprice is an
-- embeddings model that would also fail the price gate (it must fall at the first).
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed, endpoint)
VALUES ('c_chat',    'p1', 'chat-1',  1,    2,    0.90, true, 'chat'),
       ('c_pricey',  'p2', 'chat-2',  5,    5,    0.90, true, 'chat'),
       ('e_cheap',   'p3', 'embed-1', 0.01, 0.01, 0.90, true, 'embeddings'),
       ('e_better',  'p4', 'embed-2', 0.02, 0.02, 0.95, true, 'embeddings'),
       ('e_noprice', 'p5', 'embed-3', NULL, 0.01, 0.90, true, 'embeddings');
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('00000000-0000-4000-8000-00000000f001', '00000000-0000-4000-8000-00000000f000', 'shapes');
\set agent '''00000000-0000-4000-8000-00000000f001'''

------------------------------------------------------------------- the wrong_endpoint gate

SELECT is(routing.choose_route(:agent, 'general', 100, 100) ->> 'chosen_model_slug', 'c_chat',
    'a chat task never routes to an embeddings model, however cheap');
SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(routing.choose_route('00000000-0000-4000-8000-00000000f001', 'general', 100, 100))$$,
    $$VALUES ('e_better', 'wrong_endpoint'), ('e_cheap', 'wrong_endpoint'), ('e_noprice', 'wrong_endpoint')$$,
    'for a chat task every embeddings model is dropped with wrong_endpoint, the first gate (before price)');
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(routing.choose_route('00000000-0000-4000-8000-00000000f001', 'general', 100, 100))$$,
    $$VALUES ('c_chat', 0), ('c_pricey', 1)$$, 'the chat survivors are the failover order');
SELECT is(routing.choose_route(:agent, 'embed', 100, 0) ->> 'chosen_model_slug', 'e_cheap',
    'task embed routes to the cheapest embeddings model');
SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(routing.choose_route('00000000-0000-4000-8000-00000000f001', 'embed', 100, 0))$$,
    $$VALUES ('c_chat', 'wrong_endpoint'), ('c_pricey', 'wrong_endpoint'), ('e_noprice', 'not_enrolled_no_price')$$,
    'for embed the chat models are wrong_endpoint; an embeddings model still meets the other gates');
SELECT is(routing.choose_route(:agent, 'embed', 100, 0) -> 'dropped' -> 0 ->> 'endpoint', 'chat',
    'a wrong_endpoint drop names the model''s endpoint');
SELECT is(routing.choose_route(:agent, 'embed', 100, 0) ->> 'endpoint', 'embeddings',
    'the document names the task''s endpoint');
SELECT is((routing.choose_route(:agent, 'embed', 1000000, 0) ->> 'projected_cost_usd')::numeric, 0.010000,
    'an embeddings projection is input only when p_max_tokens is 0');
SELECT is(routing.choose_route(:agent, 'an-unlisted-task', 100, 100) ->> 'chosen_model_slug', 'c_chat',
    'a task type not listed needs chat');
SELECT is(routing.choose_route(:agent, 'an-unlisted-task', 100, 100) ->> 'endpoint', 'chat',
    'a task type not listed: endpoint chat');

UPDATE routing.models SET endpoint = 'chat' WHERE endpoint = 'embeddings';
SELECT is(routing.choose_route(:agent, 'embed', 100, 0) ->> 'decision_rule', 'no_candidate_enrolled',
    'no model serves embeddings: no_candidate_enrolled (wrong_endpoint is not the floor)');
UPDATE routing.models SET endpoint = 'embeddings' WHERE slug LIKE 'e\_%';

-- An operator may re-point a task type; the router follows the table.
UPDATE routing.task_floors SET endpoint = 'embeddings' WHERE task_type = 'extraction';
SELECT is(routing.choose_route(:agent, 'extraction', 100, 0) ->> 'chosen_model_slug', 'e_cheap',
    'task_floors.endpoint decides which models serve a task');
UPDATE routing.task_floors SET endpoint = 'chat' WHERE task_type = 'extraction';

------------------------------------------------------------- the write path for embeddings

CREATE TEMP TABLE emb AS
SELECT * FROM routing.insert_decision('emb-1', :agent, 'embed', 1000, 0, '{"input": ["a", "b"]}');
SELECT results_eq($$SELECT decision_rule, model_slug, outcome_status FROM emb$$,
    $$VALUES ('cheapest_clearing_floor', 'e_cheap', NULL::text)$$,
    'insert_decision with p_max_tokens 0 for embed dispatches to an embeddings model');
SELECT results_eq(
    $$SELECT outcome_status, cost_actual_usd FROM routing.complete_decision((SELECT inference_id FROM emb), '{"data": []}', 980, 0, 30)$$,
    $$VALUES ('succeeded', 0.0000098)$$, 'an embedding completes with p_output_tokens 0; cost from input tokens (10 decimals: v0.3)');

--------------------------------------------------------------------------------- bounds

SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, 'general', 1, 0)$$, :agent)),
    '22023: choose_route: p_max_tokens must be >= 1%', 'p_max_tokens 0 for a chat task: 22023 (v0.1''s rule holds)');
SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, 'no-such-task', 1, 0)$$, :agent)),
    '22023: %p_max_tokens%', 'p_max_tokens 0 for an unlisted task (chat): 22023');
SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, 'embed', 1, -1)$$, :agent)),
    '22023: %p_max_tokens%', 'a negative p_max_tokens: 22023, embeddings or not');
SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, %L, 1, 1)$$, :agent, repeat('t', 65))),
    '22023: choose_route: p_task_type must be at most 64 characters%', 'p_task_type over 64 characters: 22023');
SELECT lives_ok(format($$SELECT routing.choose_route(%L, %L, 1, 1)$$, :agent, repeat('t', 64)),
    'p_task_type of 64 characters is accepted');
SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, 'general', 1, 1, 'infinity')$$, :agent)),
    '22023: %p_as_of%', 'p_as_of infinity: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, 'general', 1, 1, '294276-01-01')$$, :agent)),
    '22023: %p_as_of%', 'p_as_of near the type''s end: 22023');
SELECT alike(pg_temp.error_of(format($$SELECT routing.choose_route(%L, 'general', 1, 1, NULL)$$, :agent)),
    '22023: choose_route: p_as_of must not be NULL', 'a NULL p_as_of: 22023, as in v0.1');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-0000000dead0', 'general', 1, 1, 'infinity')$$),
    '22023: %p_as_of%', 'a bad p_as_of with an unknown agent: 22023 before P0002');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('x', %L, 'general', 2147483647, 2147483647)$$, :agent)),
    'no error', 'the largest token counts route without an overflow');
SELECT is(
    (SELECT count(*)::int FROM routing.routing_outcomes WHERE request_id = 'x'), 1,
    'and are recorded');

SELECT * FROM finish();
ROLLBACK;
