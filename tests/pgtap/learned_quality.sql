-- pgTAP: learned quality (change learned_quality, router v0.3, route_plans v0.3,
-- judge_queue v0.3): the estimate has no step at any label count, a label's weight halves
-- at one half-life, a late label counts at its outcome's time, the gate's draws are
-- deterministic per request and choose_route(..., p_request_id) is insert_decision's
-- decision, explain_outcome shows the quality figures, and (change quality_gate, router
-- after v0.3.0) a learned model clears the floor with confidence: estimate
-- - z sd k / (k + w), else only by its capped draw.
BEGIN;
SELECT plan(41);

SET LOCAL TimeZone = 'UTC';
DELETE FROM routing.models;
DELETE FROM routing.agents;
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('lq-cheap', 'tap', 'cheap', 0.1, 0.3, 0.80, true),
       ('lq-mid',   'tap', 'mid',   0.5, 1.5, 0.85, true),
       ('lq-top',   'tap', 'top',   5.0, 15.0, 0.93, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('b0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000000', 'lq');

CREATE FUNCTION pg_temp.route(p_task text, p_as_of timestamptz, p_request text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT routing.choose_route('b0000000-0000-4000-8000-000000000001', p_task, 100, 100, p_as_of, p_request)
$$;
-- An entry of a document (candidate or dropped) by slug.
CREATE FUNCTION pg_temp.entry(p_doc jsonb, p_slug text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT e FROM jsonb_array_elements((p_doc -> 'candidates') || (p_doc -> 'dropped')) e WHERE e ->> 'slug' = p_slug
$$;

------------------------------------------------------------------ structure and settings

SELECT has_function('routing', 'choose_route',
    ARRAY['uuid', 'text', 'integer', 'integer', 'timestamp with time zone', 'text'],
    'choose_route(..., p_request_id text) exists');
SELECT has_function('routing', 'model_quality', ARRAY['timestamp with time zone'], 'routing.model_quality(p_as_of) exists');
SELECT results_eq(
    $$SELECT quality_prior_weight, quality_half_life, quality_explore_share FROM routing.settings$$,
    $$VALUES (10::numeric, '14 days'::interval, 0.03::numeric)$$,
    'settings: quality_prior_weight 10, quality_half_life 14 days, quality_explore_share 0.03 by default');
SELECT throws_ok($$UPDATE routing.settings SET quality_half_life = '0.5 seconds'$$, '23514', NULL,
    'a half-life under one second is refused');

------------------------------------------------------------ the estimate: no step, ever

-- Labels at x = 0.25 given at the decision's instant (weight 1 each), 0..60 of them: the
-- estimate is (10 * 0.8 + 0.25 n) / (10 + n) at every n, so consecutive counts differ by
-- (0.8 - 0.25) * 10 / ((10 + n) (11 + n)) and nothing jumps at 30.
CREATE TEMP TABLE est (n int, q numeric, source text);
DO $$
BEGIN
    FOR n IN 0..60 LOOP
        DELETE FROM routing.model_task_quality WHERE model_slug = 'lq-cheap';
        IF n > 0 THEN
            INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples, score_sum,
                                                    label_weight, weighted_score, weights_at)
            VALUES ('lq-cheap', 'code', n, 2 * n, n, 0.25 * n, '2030-01-01 12:00:00+00');
        END IF;
        INSERT INTO est
        SELECT n, (e ->> 'effective_quality')::numeric, e ->> 'quality_source'
          FROM pg_temp.entry(pg_temp.route('code', '2030-01-01 12:00:00+00'), 'lq-cheap') e;
    END LOOP;
END
$$;
SELECT is((SELECT count(*) FILTER (WHERE q = round((8 + 0.25 * n) / (10 + n), 4)) FROM est), 61::bigint,
    'at every label count 0..60 the estimate is (k q_prior + sum x) / (k + n), rounded to 4 places');
SELECT ok((SELECT max(abs(b.q - a.q)) FROM est a JOIN est b ON b.n = a.n + 1) <= 0.05,
    'no step: one more label moves the estimate by at most (0.8 - 0.25) / 11');
SELECT is((SELECT b.q - a.q FROM est a JOIN est b ON b.n = a.n + 1 WHERE a.n = 29),
    round((8 + 0.25 * 30) / 40.0, 4) - round((8 + 0.25 * 29) / 39.0, 4),
    'the 30th label moves it like any other (min_judged_samples switches nothing)');
SELECT results_eq($$SELECT source FROM est WHERE n IN (0, 1) ORDER BY n$$, $$VALUES ('prior'), ('learned')$$,
    'quality_source is prior with no label weight, learned from the first label');

------------------------------------------------- the decay and record_judgement on late labels

-- A half-life of 1024 s makes the quality tick 1 s, so a whole-second instant is exact.
UPDATE routing.settings SET quality_half_life = '1024 seconds';
DELETE FROM routing.model_task_quality;
CREATE TEMP TABLE req AS
SELECT r, (routing.insert_decision(r, 'b0000000-0000-4000-8000-000000000001', 'code', 100, 100)).*
  FROM unnest(ARRAY['late-1', 'late-2', 'late-3']) r;
SELECT is((SELECT count(*) FROM req WHERE model_slug = 'lq-cheap'), 3::bigint, 'three requests routed to lq-cheap');
SELECT routing.complete_decision(inference_id, '{}', 100, 100, 10) FROM req;
UPDATE routing.routing_outcomes o SET created_at = t.at
  FROM (VALUES ('late-1', timestamptz '2030-01-01 00:00:00+00'), ('late-2', '2030-01-01 00:17:04+00'),
               ('late-3', '2030-01-01 00:34:08+00')) t (r, at)
 WHERE o.request_id = t.r AND o.agent_id = 'b0000000-0000-4000-8000-000000000001';

SELECT routing.record_judgement((SELECT outcome_id FROM req WHERE r = 'late-1'), 'labeled', 5, NULL, 'tap');
SELECT results_eq(
    $$SELECT label_weight, effective_quality FROM routing.model_quality('2030-01-01 00:17:04+00') WHERE model_slug = 'lq-cheap'$$,
    $$VALUES (0.5000, round((8 + 0.5) / 10.5, 4))$$,
    'a label''s weight halves at one half-life (1024 s after its outcome''s created_at)');
SELECT results_eq(
    $$SELECT label_weight FROM routing.model_quality('2030-01-01 00:34:08+00') WHERE model_slug = 'lq-cheap'$$,
    $$VALUES (0.2500)$$, '... and quarters at two');
SELECT is((pg_temp.entry(pg_temp.route('code', '2030-01-01 00:17:04+00'), 'lq-cheap') ->> 'label_weight')::numeric, 0.5000,
    'the router''s explanation shows the same label weight');

-- The newest label first, then one from an hour's half before it (a judge running late).
SELECT routing.record_judgement((SELECT outcome_id FROM req WHERE r = 'late-3'), 'labeled', 1, NULL, 'tap');
SELECT results_eq(
    $$SELECT label_weight, weighted_score, weights_at FROM routing.model_task_quality WHERE model_slug = 'lq-cheap'$$,
    $$VALUES (1.25::double precision, 0.25::double precision, timestamptz '2030-01-01 00:34:08+00')$$,
    'a newer label: the sums decay to its outcome''s time and gain it (0.25 + 1; 0.25 * 1 + 0)');
SELECT routing.record_judgement((SELECT outcome_id FROM req WHERE r = 'late-2'), 'labeled', 3, NULL, 'tap');
SELECT results_eq(
    $$SELECT label_weight, weighted_score, weights_at, judged_samples FROM routing.model_task_quality WHERE model_slug = 'lq-cheap'$$,
    $$VALUES (1.75::double precision, 0.5::double precision, timestamptz '2030-01-01 00:34:08+00', 3::bigint)$$,
    'a late label counts at its outcome''s time: weight 0.5 one half-life before the newest, score 0.5 * 0.5');
SELECT results_eq(
    $$SELECT label_weight FROM routing.model_quality('2030-01-01 00:51:12+00') WHERE model_slug = 'lq-cheap'$$,
    $$VALUES (0.8750)$$, 'read a half-life later, all three labels weigh half as much');

-- A changed half-life applies from the change on: the sums are re-referenced to now.
UPDATE routing.model_task_quality SET weights_at = now() - interval '1024 seconds', label_weight = 4, weighted_score = 2
 WHERE model_slug = 'lq-cheap';
UPDATE routing.settings SET quality_half_life = '14 days';
SELECT results_eq(
    $$SELECT label_weight, weighted_score, weights_at FROM routing.model_task_quality WHERE model_slug = 'lq-cheap'$$,
    $$VALUES (2::double precision, 1::double precision, now())$$,
    'changing the half-life decays the sums to now under the old one (4 -> 2 after 1024 s at 1024 s)');

-------------------------------------------- the gate: deterministic draws, replayable decisions

-- lq-cheap is learned below the code floor (0.78) but not surely: 20 labels at 0.6, estimate
-- (8 + 12) / 30 = 0.6667, sd 0.0847. With every request drawing (share 1) it is admitted
-- when its Thompson figure clears the floor, about 9 % of requests.
UPDATE routing.settings SET quality_explore_share = 1;
UPDATE routing.model_task_quality SET weights_at = now(), label_weight = 20, weighted_score = 12
 WHERE model_slug = 'lq-cheap';
CREATE TEMP TABLE draws AS
SELECT 'draw-' || g AS r, pg_temp.route('code', now(), 'draw-' || g) AS doc FROM generate_series(1, 300) g;
SELECT ok((SELECT count(*) FROM draws WHERE (doc ->> 'exploration')::boolean) BETWEEN 5 AND 60,
    'some requests, not most, explore lq-cheap (its draw clears the floor)');
SELECT is((SELECT count(*) FROM draws WHERE (doc ->> 'exploration')::boolean <> (doc ->> 'chosen_model_slug' = 'lq-cheap')),
    0::bigint, 'a request explores exactly when the model below the floor is chosen');
SELECT is((SELECT count(*) FROM draws d WHERE d.doc <> pg_temp.route('code', now(), d.r)), 0::bigint,
    'the same request gets the same document, draws included (no random())');
SELECT is((SELECT count(*) FROM draws d WHERE (pg_temp.route('code', now()) ->> 'exploration')::boolean), 0::bigint,
    'without p_request_id there is no draw: no exploration');
SELECT ok((SELECT bool_and((pg_temp.entry(doc, 'lq-cheap') ->> 'gate_quality')::numeric >= 0.78
                           AND (pg_temp.entry(doc, 'lq-cheap') ->> 'explored')::boolean)
             FROM draws WHERE (doc ->> 'exploration')::boolean),
    'an explored candidate shows its Thompson figure, at or above the floor, as gate_quality');
SELECT ok((SELECT bool_and(e ->> 'reason' = 'below_quality_floor' AND (e ->> 'effective_quality')::numeric = 0.6667
                           AND e ->> 'quality_source' = 'learned' AND (e ->> 'label_weight')::numeric = 20
                           AND (e ->> 'gate_quality')::numeric < 0.78)
             FROM draws, pg_temp.entry(doc, 'lq-cheap') e WHERE NOT (doc ->> 'exploration')::boolean),
    'dropped at the floor gate: source, label weight, estimate and the figure compared with the floor');

-- insert_decision decides each request as choose_route(..., p_request_id) did, at the same
-- instant (now() inside this transaction), and explain_outcome gives the document back:
-- six exploring requests and four others (few rows: a later file expects index-only scans
-- on a ledger whose pages are all visible).
CREATE TEMP TABLE decided AS
SELECT d.r, d.doc, i.*
  FROM draws d, LATERAL routing.insert_decision(d.r, 'b0000000-0000-4000-8000-000000000001', 'code', 100, 100) i
 WHERE d.r IN ((SELECT x.r FROM draws x WHERE (x.doc ->> 'exploration')::boolean ORDER BY x.r LIMIT 6)
                UNION ALL
                (SELECT x.r FROM draws x WHERE NOT (x.doc ->> 'exploration')::boolean ORDER BY x.r LIMIT 4));
SELECT is((SELECT count(*) FROM decided WHERE model_slug IS DISTINCT FROM doc ->> 'chosen_model_slug'
                                         OR (doc ->> 'exploration')::boolean <> (model_slug = 'lq-cheap')), 0::bigint,
    'insert_decision routes every request to choose_route(..., p_request_id)''s choice');
SELECT is((SELECT count(*) FROM decided d WHERE routing.explain_outcome(d.outcome_id) <> d.doc), 0::bigint,
    'explain_outcome returns choose_route''s document for the request, exploration flag and figures included');
SELECT is((SELECT count(*) FROM decided d WHERE routing.explain_outcome(d.outcome_id) <> pg_temp.route('code', now(), d.r)),
    0::bigint, 'a repeat of choose_route with p_request_id still equals the stored decision');

SELECT throws_ok($$SELECT routing.choose_route('b0000000-0000-4000-8000-000000000001', 'code', 1, 1, now(), '')$$,
    '22023', NULL, 'an empty p_request_id is 22023');

---------------------------------------------------- the floor cleared with confidence

SELECT is((SELECT quality_gate_z FROM routing.settings), 0.5::numeric, 'settings: quality_gate_z 0.5 by default');
SELECT throws_ok($$UPDATE routing.settings SET quality_gate_z = -0.1$$, '23514', NULL, 'a negative quality_gate_z is refused');
SELECT throws_ok($$UPDATE routing.settings SET quality_gate_z = 10.5$$, '23514', NULL, 'a quality_gate_z over 10 is refused');

-- lq-cheap (prior 0.80) with 5 labels at 0.76: estimate (8 + 3.8) / 15 = 0.7867, above the
-- code floor (0.78) but not surely: sd sqrt(0.7867 * 0.2133 / 16) = 0.1024, the prior
-- carrying 10 / 15 of it, so its gate figure is 0.7867 - 0.5 * 0.1024 * 10 / 15 = 0.7525.
UPDATE routing.settings SET quality_explore_share = 0;
UPDATE routing.model_task_quality SET weights_at = now(), label_weight = 5, weighted_score = 3.8
 WHERE model_slug = 'lq-cheap';
SELECT is(pg_temp.route('code', now(), 'gate-0') ->> 'chosen_model_slug', 'lq-mid',
    'a learned model above the floor by its estimate but not by its bound is not admitted (no draw)');
SELECT results_eq(
    $$SELECT e ->> 'reason', (e ->> 'effective_quality')::numeric, (e ->> 'gate_quality')::numeric
        FROM pg_temp.entry(pg_temp.route('code', now(), 'gate-0'), 'lq-cheap') e$$,
    $$VALUES ('below_quality_floor', 0.7867, round(11.8 / 15 - 0.5 * sqrt(11.8 / 15 * (1 - 11.8 / 15) / 16) * 10 / 15, 4))$$,
    '... dropped below_quality_floor: its estimate 0.7867, its gate figure estimate - z sd k / (k + w) = 0.7525');
UPDATE routing.settings SET quality_gate_z = 0;
SELECT is(pg_temp.route('code', now()) ->> 'chosen_model_slug', 'lq-cheap',
    'with quality_gate_z 0 the same model is admitted by its estimate (v0.3.0''s rule)');
UPDATE routing.settings SET quality_gate_z = 0.5;

-- With the default share it is admitted only by its draw, on the share of requests whose
-- draw falls in it (a model just under its bound clears the floor on every such draw).
UPDATE routing.settings SET quality_explore_share = 0.03;
CREATE TEMP TABLE gate_draws AS
SELECT 'gate-' || g AS r, pg_temp.route('code', now(), 'gate-' || g) AS doc FROM generate_series(1, 400) g;
SELECT is((SELECT count(*) FROM gate_draws WHERE (doc ->> 'chosen_model_slug' = 'lq-cheap')
                                              <> (doc ->> 'exploration')::boolean), 0::bigint,
    'it is chosen only by its draw: exactly on the requests that explore');
SELECT is((SELECT count(*) FROM gate_draws WHERE (doc ->> 'exploration')::boolean),
          (SELECT count(*) FROM generate_series(1, 400) g
            WHERE routing._quality_draw('b0000000-0000-4000-8000-000000000001', 'gate-' || g, 'lq-cheap') < 0.03),
    '... on every request whose draw falls in the share (its Thompson figure then clears the floor)');
SELECT ok((SELECT count(*) FROM gate_draws WHERE (doc ->> 'exploration')::boolean) BETWEEN 2 AND 30,
    '... a few per cent of requests, not none');

-- insert_decision (through the task's route plan) decides as choose_route(..., p_request_id)
-- did, for two exploring requests and two others.
CREATE TEMP TABLE gate_decided AS
SELECT d.r, d.doc, i.*
  FROM gate_draws d, LATERAL routing.insert_decision(d.r, 'b0000000-0000-4000-8000-000000000001', 'code', 100, 100) i
 WHERE d.r IN ((SELECT x.r FROM gate_draws x WHERE (x.doc ->> 'exploration')::boolean ORDER BY x.r LIMIT 2)
                UNION ALL
                (SELECT x.r FROM gate_draws x WHERE NOT (x.doc ->> 'exploration')::boolean ORDER BY x.r LIMIT 2));
SELECT is((SELECT count(*) FROM gate_decided WHERE model_slug IS DISTINCT FROM doc ->> 'chosen_model_slug'), 0::bigint,
    'insert_decision routes each request under the bound to choose_route(..., p_request_id)''s choice');
SELECT is((SELECT count(*) FROM gate_decided d WHERE routing.explain_outcome(d.outcome_id) <> d.doc), 0::bigint,
    '... and explain_outcome returns that document, gate figures included');

-- With enough labels at the same side of the floor the margin vanishes: 200 labels at 0.80,
-- estimate (8 + 160) / 210 = 0.8, gate figure 0.8 - 0.5 * 0.0275 * 10 / 210 = 0.7993.
UPDATE routing.model_task_quality SET weights_at = now(), label_weight = 200, weighted_score = 160
 WHERE model_slug = 'lq-cheap';
SELECT is(pg_temp.route('code', now()) ->> 'chosen_model_slug', 'lq-cheap',
    'with enough labels it is admitted by its estimate, no draw needed');
SELECT results_eq(
    $$SELECT (e ->> 'gate_quality')::numeric, (e ->> 'explored')::boolean, (d ->> 'exploration')::boolean
        FROM (SELECT pg_temp.route('code', now(), 'gate-1') d) x, pg_temp.entry(x.d, 'lq-cheap') e$$,
    $$VALUES (round(0.8 - 0.5 * sqrt(0.8 * 0.2 / 211) * 10 / 210, 4), false, false)$$,
    '... its gate figure shown, not an exploration');

-- Labels faded to nothing: the prior alone no longer carries a measured model (0.80 - 0.5 *
-- sqrt(0.8 * 0.2 / 11) = 0.7397), while a model never labelled is admitted on its q_prior.
UPDATE routing.model_task_quality SET weights_at = now() - interval '100 years', label_weight = 1, weighted_score = 0.8
 WHERE model_slug = 'lq-cheap';
SELECT results_eq(
    $$SELECT e ->> 'reason', e ->> 'quality_source', (e ->> 'effective_quality')::numeric, (e ->> 'gate_quality')::numeric
        FROM pg_temp.entry(pg_temp.route('code', now()), 'lq-cheap') e$$,
    $$VALUES ('below_quality_floor', 'learned', 0.8000, 0.7397)$$,
    'a model whose labels have faded must clear the floor with confidence: its prior 0.80 alone does not');
DELETE FROM routing.model_task_quality WHERE model_slug = 'lq-cheap';
SELECT results_eq(
    $$SELECT d ->> 'chosen_model_slug', e ->> 'quality_source', (e ->> 'gate_quality')::numeric
        FROM (SELECT pg_temp.route('code', now()) d) x, pg_temp.entry(x.d, 'lq-cheap') e$$,
    $$VALUES ('lq-cheap', 'prior', 0.8000)$$,
    'a model with no labels is admitted by its prior, as before (gate figure = estimate)');

SELECT * FROM finish();
ROLLBACK;
