-- pgTAP for the route_plans change: the write path's per-task route plan gives exactly
-- the router's compact explanation, and stops being used the moment anything the router
-- reads changes (every source table, a cooldown starting or ending, the session's
-- TimeZone, a per-call cap that could drop a model).
BEGIN;
SELECT plan(41);

CREATE FUNCTION pg_temp.planned(p_cap numeric, p_task text, p_in int, p_max int, p_as_of timestamptz)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT routing._explain_from_plan(p_cap, p_task, p_in, p_max, p_as_of)
$$;
CREATE FUNCTION pg_temp.routed(p_cap numeric, p_task text, p_in int, p_max int, p_as_of timestamptz)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT routing._explain_route(p_cap, p_task, p_in, p_max, p_as_of, 'compact')
$$;
CREATE FUNCTION pg_temp.epoch(p_source text) RETURNS bigint LANGUAGE sql AS $$
    SELECT epoch FROM routing.route_epochs WHERE source = p_source
$$;

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('p_a', 'p1', 'a-1', 1, 2, 0.80, true),
       ('p_b', 'p2', 'b-1', 2, 3, 0.70, true),
       ('p_c', 'p3', 'c-1', 3, 4, 0.90, true),
       ('p_d', 'p4', 'd-1', 40, 50, 0.95, true),
       ('p_v', 'p5', 'v-1', 0.5, 0.5, 0.90, false),
       ('p_low', 'p6', 'low-1', 0.1, 0.1, 0.10, true);
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed, endpoint)
VALUES ('p_emb', 'p7', 'emb-1', 0.02, 0.02, 0.80, true, 'embeddings');

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'route_epochs', 'routing.route_epochs exists');
SELECT has_table('routing', 'route_plans', 'routing.route_plans exists');
SELECT is((SELECT relpersistence::text FROM pg_class WHERE oid = 'routing.route_plans'::regclass), 'u',
          'route_plans is unlogged: a cache, rebuilt after a crash');
SELECT ok(NOT has_function_privilege('routing_app', 'routing._explain_from_plan(numeric, text, int, int, timestamptz)', 'EXECUTE')
          AND NOT has_function_privilege('routing_app', 'routing._build_route_plan(text, timestamptz)', 'EXECUTE'),
          'the plan functions are private');
SELECT ok(NOT has_table_privilege('routing_app', 'routing.route_plans', 'INSERT')
          AND NOT has_table_privilege('routing_app', 'routing.route_epochs', 'UPDATE'),
          'a gateway cannot write a plan or the epoch');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgname = 'bump_route_epoch'), 7,
          'every table the router reads bumps the epoch');

------------------------------------------------------------------ the plan is the router

SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          'a first request: the plan''s explanation is the router''s');
SELECT is((SELECT count(*)::int FROM routing.route_plans), 1, '... and the task''s plan is stored');
SELECT is((SELECT epochs FROM routing.route_plans), routing._route_epochs(), '... at the current epochs');
SELECT ok(EXISTS (SELECT FROM routing.route_snapshots s, routing.route_plans p
                   WHERE s.snapshot_key = decode(p.explanation ->> 'snapshot', 'hex')),
          '... its route snapshot is written with it');
SELECT built_at AS built1 FROM routing.route_plans \gset
SELECT is(pg_temp.planned(NULL, 'general', 37, 9, now()), pg_temp.routed(NULL, 'general', 37, 9, now()),
          'other token counts: the same plan, this request''s projected costs');
SELECT is(pg_temp.planned(NULL, 'general', 0, 1, now()), pg_temp.routed(NULL, 'general', 0, 1, now()),
          'no input tokens');
SELECT is((SELECT built_at FROM routing.route_plans), :'built1'::timestamptz, 'a current plan is not rebuilt');

SELECT is(pg_temp.planned(NULL, 'embed', 120, 0, now()), pg_temp.routed(NULL, 'embed', 120, 0, now()),
          'an embeddings task (0 output tokens) has its own plan');
INSERT INTO routing.task_floors (task_type, min_quality) VALUES ('hard', 0.99);
SELECT is(pg_temp.planned(NULL, 'hard', 10, 10, now()), pg_temp.routed(NULL, 'hard', 10, 10, now()),
          'a task no model clears: the plan rejects as the router does');
SELECT is(pg_temp.planned(NULL, 'hard', 10, 10, now()) ->> 'decision_rule', 'no_candidate_clears_floor',
          '... no_candidate_clears_floor');

------------------------------------------------------------ the per-call cap

-- p_d, the dearest chat model: 1000 in + 500 out cost 0.065 there, 0.002 on p_a.
SELECT is(pg_temp.planned(1, 'general', 1000, 500, now()), pg_temp.routed(1, 'general', 1000, 500, now()),
          'a cap no model of the endpoint can exceed: the plan, with the cap in the header');
SELECT is(pg_temp.planned(0.004, 'general', 1000, 500, now()), pg_temp.routed(0.004, 'general', 1000, 500, now()),
          'a cap that drops models: routed in full');
SELECT is(pg_temp.planned(0.004, 'general', 1000, 500, now()) -> 'dropped_counts' ->> 'exceeds_budget_cap', '2',
          '... with the models it drops');
SELECT is(pg_temp.planned(0.0001, 'general', 1000, 500, now()), pg_temp.routed(0.0001, 'general', 1000, 500, now()),
          'a cap that drops every model');

------------------------------------------------------------ every input bumps the epoch

SELECT pg_temp.epoch('catalog') AS e0 \gset
UPDATE routing.models SET price_in_per_mtok_usd = 0.9 WHERE slug = 'p_a';
SELECT cmp_ok(pg_temp.epoch('catalog'), '>', :e0::bigint, 'a model change bumps the catalog epoch');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          '... and the next request routes over the new price');
SELECT is((SELECT epochs FROM routing.route_plans WHERE task_type = 'general'), routing._route_epochs(),
          '... from a plan rebuilt at the new epochs');

SELECT pg_temp.epoch('catalog') AS e1 \gset
UPDATE routing.task_floors SET min_quality = 0.75 WHERE task_type = 'general';
SELECT cmp_ok(pg_temp.epoch('catalog'), '>', :e1::bigint, 'a floor change bumps the catalog epoch');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          '... the new floor drops p_b');

SELECT pg_temp.epoch('catalog') AS e2 \gset
UPDATE routing.settings SET max_attempts = 2;
SELECT cmp_ok(pg_temp.epoch('catalog'), '>', :e2::bigint, 'a settings change bumps the catalog epoch');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          '... max_attempts = 2 keeps two candidates inline');
UPDATE routing.settings SET max_attempts = 6;

-- v0.3: a label bumps its own task's counter (routing.quality_epochs), not every task's.
SELECT coalesce((SELECT epoch FROM routing.quality_epochs WHERE task_type = 'general'), 0) AS e3 \gset
INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples, score_sum, label_weight, weighted_score, weights_at)
VALUES ('p_c', 'general', 100, 150, 100, 12.5, now());
SELECT cmp_ok((SELECT epoch FROM routing.quality_epochs WHERE task_type = 'general'), '>', :e3::bigint,
              'learned quality bumps its task''s quality epoch');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          '... p_c''s learned quality (0.125) drops it below the floor');

SELECT pg_temp.epoch('catalog') AS e4 \gset
DELETE FROM routing.route_snapshots;
SELECT cmp_ok(pg_temp.epoch('catalog'), '>', :e4::bigint, 'deleting route snapshots bumps the catalog epoch');
SELECT * FROM routing._explain_from_plan(NULL, 'general', 1000, 500, now()) AS x \gset
SELECT ok(EXISTS (SELECT FROM routing.route_snapshots s WHERE s.snapshot_key = decode(:'x'::jsonb ->> 'snapshot', 'hex')),
          '... so no plan names a snapshot that is gone');

------------------------------------------------------------ cooldowns and time

SELECT pg_temp.epoch('cooldowns') AS e5 \gset
INSERT INTO routing.model_cooldowns (model_slug, cooling_until) VALUES ('p_a', now() + interval '10 minutes');
SELECT cmp_ok(pg_temp.epoch('cooldowns'), '>', :e5::bigint, 'a cooldown bumps the cooldowns epoch');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          'while p_a cools down, the plan drops it');
SELECT is((SELECT valid_until FROM routing.route_plans WHERE task_type = 'general' AND time_zone = current_setting('TimeZone')),
          least(now() + interval '10 minutes',
                routing._quality_tick(now(), (SELECT quality_half_life FROM routing.settings))
                + (SELECT quality_half_life / 1024 FROM routing.settings)),
          '... and holds only until the cooldown ends (or, v0.3, its quality tick does)');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now() + interval '11 minutes'),
          pg_temp.routed(NULL, 'general', 1000, 500, now() + interval '11 minutes'),
          'after the cooldown ended: p_a is back');
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now() + interval '1 minute'),
          pg_temp.routed(NULL, 'general', 1000, 500, now() + interval '1 minute'),
          'an instant before the cooldown''s end, from a plan built after it: p_a cools again');

SET LOCAL TimeZone = 'Asia/Tokyo';
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          'another TimeZone: the cooldown''s end is rendered in it');
SELECT is((SELECT count(*)::int FROM routing.route_plans WHERE task_type = 'general'), 2,
          '... from a plan of its own');
RESET TimeZone;

TRUNCATE routing.model_cooldowns;
SELECT is(pg_temp.planned(NULL, 'general', 1000, 500, now()), pg_temp.routed(NULL, 'general', 1000, 500, now()),
          'a truncated cooldown table is seen too');

----------------------------------------------------------------- the write path uses it

INSERT INTO routing.agents (id, tenant_id, name) VALUES
    ('00000000-0000-4000-8000-0000000f0001', '00000000-0000-4000-8000-0000000f0000', 'plan-agent');
SELECT routing.choose_route('00000000-0000-4000-8000-0000000f0001', 'general', 321, 123) AS doc \gset
SELECT * FROM routing.insert_decision('plan-1', '00000000-0000-4000-8000-0000000f0001', 'general', 321, 123) \gset d_
SELECT is((SELECT explanation FROM routing.routing_outcomes WHERE id = :d_outcome_id),
          pg_temp.routed(NULL, 'general', 321, 123, now()), 'insert_decision stores the plan''s explanation');
SELECT is(routing.explain_outcome(:d_outcome_id), :'doc'::jsonb, '... and explain_outcome gives choose_route''s document back');

SELECT * FROM finish();
ROLLBACK;
