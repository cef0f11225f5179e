-- pgTAP for the router change: routing.choose_route (cheapest_clearing_floor).
--
-- The router reads the whole catalog, so each scenario below starts from an empty
-- catalog (pg_temp.reset_catalog) and inserts exactly the models it is about. Time is
-- passed in (p_as_of), never read from the clock: the cooldowns below are placed around
-- a fixed instant T = 2030-01-01 12:00 UTC.
BEGIN;
SELECT plan(59);

------------------------------------------------------------------------------ helpers

CREATE FUNCTION pg_temp.reset_catalog() RETURNS void LANGUAGE sql AS $$
    DELETE FROM routing.model_cooldowns;
    DELETE FROM routing.model_task_quality;
    DELETE FROM routing.models;
$$;

CREATE FUNCTION pg_temp.model(
    p_slug text, p_in numeric, p_out numeric, p_q numeric,
    p_allowed boolean DEFAULT true, p_enabled boolean DEFAULT true
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                                price_out_per_mtok_usd, q_prior, m_allowed, enabled)
    VALUES (p_slug, 'prov-' || p_slug, 'pm-' || p_slug, p_in, p_out, p_q, p_allowed, p_enabled);
$$;

CREATE FUNCTION pg_temp.cool(p_slug text, p_until timestamptz) RETURNS void LANGUAGE sql AS $$
    INSERT INTO routing.model_cooldowns (model_slug, cooling_until) VALUES (p_slug, p_until);
$$;

-- choose_route for an agent named in the fixture, at T unless told otherwise.
CREATE FUNCTION pg_temp.route(
    p_agent text, p_task text, p_in int, p_max int,
    p_as_of timestamptz DEFAULT '2030-01-01 12:00:00+00'
) RETURNS jsonb LANGUAGE sql AS $$
    SELECT routing.choose_route((SELECT id FROM routing.agents WHERE name = p_agent),
                                p_task, p_in, p_max, p_as_of);
$$;

\ir helpers/error_of.sql
\ir helpers/route_document.sql

INSERT INTO routing.agents (id, tenant_id, name, per_call_cap_usd) VALUES
    ('00000000-0000-4000-8000-00000000c001', '00000000-0000-4000-8000-00000000c000', 'uncapped', NULL),
    ('00000000-0000-4000-8000-00000000c002', '00000000-0000-4000-8000-00000000c000', 'capped', 0.01);

----------------------------------------------------- structure, security, privileges

SELECT has_function('routing', 'choose_route',
    ARRAY['uuid', 'text', 'integer', 'integer', 'timestamp with time zone', 'text'],
    'routing.choose_route(uuid, text, int, int, timestamptz, text) exists');
SELECT function_returns('routing', 'choose_route',
    ARRAY['uuid', 'text', 'integer', 'integer', 'timestamp with time zone', 'text'], 'jsonb',
    'choose_route returns jsonb');
SELECT is(
    pg_get_function_arguments('routing.choose_route(uuid, text, int, int, timestamptz, text)'::regprocedure),
    'p_agent_id uuid, p_task_type text, p_input_tokens integer, p_max_tokens integer, p_as_of timestamp with time zone DEFAULT now(), p_request_id text DEFAULT NULL::text',
    'choose_route''s argument names, p_as_of DEFAULT now() and (v0.3) p_request_id DEFAULT NULL are the contract''s'
);
SELECT volatility_is('routing', 'choose_route',
    ARRAY['uuid', 'text', 'integer', 'integer', 'timestamp with time zone', 'text'], 'stable',
    'choose_route is STABLE: it cannot write');
SELECT is_definer('routing', 'choose_route',
    ARRAY['uuid', 'text', 'integer', 'integer', 'timestamp with time zone', 'text'],
    'choose_route is SECURITY DEFINER (it reads private tables)');
SELECT ok(
    (SELECT EXISTS (SELECT FROM unnest(proconfig) c WHERE c LIKE 'search_path=%')
       FROM pg_catalog.pg_proc
      WHERE oid = 'routing.choose_route(uuid, text, int, int, timestamptz, text)'::regprocedure),
    'choose_route pins its search_path'
);
SELECT function_privs_are('routing', 'choose_route',
    ARRAY['uuid', 'text', 'integer', 'integer', 'timestamp with time zone', 'text'],
    'routing_app', ARRAY['EXECUTE'], 'routing_app may execute choose_route');
SELECT ok(
    NOT has_function_privilege('public', 'routing.choose_route(uuid, text, int, int, timestamptz, text)', 'EXECUTE'),
    'PUBLIC may not execute choose_route'
);

SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('cheap', 1, 1, 0.9);
SET LOCAL ROLE routing_app;
SELECT is(
    routing.choose_route('00000000-0000-4000-8000-00000000c001', 'general', 10, 10) ->> 'chosen_model_slug',
    'cheap',
    'routing_app can route (four arguments: p_as_of defaults to now())'
);
SELECT throws_ok(
    $$SELECT * FROM routing.models$$, '42501', NULL,
    'routing_app cannot read the catalog directly'
);
RESET ROLE;

--------------------------------------------------------- every gate, in order (at T)

-- One catalog that exercises every drop reason, and models failing two gates that must
-- fall at the first. Agent "capped" allows 0.01 USD per call; general's floor is 0.68;
-- 1000 input and 1000 max tokens, so a model priced 10/10 projects 0.02.
SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('a_in_null', NULL, 1, 0.9);
SELECT pg_temp.model('a_in_zero', 0, 1, 0.9);
SELECT pg_temp.model('a_out_null', 1, NULL, 0.9);
SELECT pg_temp.model('a_out_negative', 1, -1, 0.9);
SELECT pg_temp.model('b_no_q', 1, 1, NULL);
SELECT pg_temp.model('c_veto_false', 0.5, 0.5, 0.9, false);
SELECT pg_temp.model('c_veto_null', 1, 1, 0.9, NULL);
SELECT pg_temp.model('d_disabled', 1, 1, 0.9, true, false);
SELECT pg_temp.model('e_low_q', 1, 1, 0.6);
SELECT pg_temp.model('f_pricey', 10, 10, 0.9);
SELECT pg_temp.model('g_cooling', 1, 1, 0.9);
SELECT pg_temp.model('h_winner', 2, 2, 0.8);
SELECT pg_temp.model('o1_price_and_q', NULL, 1, NULL);
SELECT pg_temp.model('o2_q_and_veto', 1, 1, NULL, false);
SELECT pg_temp.model('o3_veto_and_disabled', 1, 1, 0.9, false, false);
SELECT pg_temp.model('o4_disabled_and_floor', 1, 1, 0.1, true, false);
SELECT pg_temp.model('o5_floor_and_budget', 10, 10, 0.1);
SELECT pg_temp.model('o6_budget_and_cooling', 10, 10, 0.9);
SELECT pg_temp.cool('g_cooling', '2030-01-01 13:00+00');
SELECT pg_temp.cool('o6_budget_and_cooling', '2030-01-01 13:00+00');

SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(pg_temp.route('capped', 'general', 1000, 1000))$$,
    $$VALUES ('a_in_null', 'not_enrolled_no_price'), ('a_in_zero', 'not_enrolled_no_price'),
             ('a_out_negative', 'not_enrolled_no_price'), ('a_out_null', 'not_enrolled_no_price'),
             ('b_no_q', 'not_enrolled_no_q_prior'),
             ('c_veto_false', 'm_allowed_veto'), ('c_veto_null', 'm_allowed_veto'),
             ('d_disabled', 'disabled'), ('e_low_q', 'below_quality_floor'),
             ('f_pricey', 'exceeds_budget_cap'), ('g_cooling', 'cooling_down'),
             ('o1_price_and_q', 'not_enrolled_no_price'),
             ('o2_q_and_veto', 'not_enrolled_no_q_prior'),
             ('o3_veto_and_disabled', 'm_allowed_veto'),
             ('o4_disabled_and_floor', 'disabled'),
             ('o5_floor_and_budget', 'below_quality_floor'),
             ('o6_budget_and_cooling', 'exceeds_budget_cap')$$,
    'each model is dropped with its reason, at the first gate it fails (price, q_prior, m_allowed, enabled, floor, budget, cooldown)'
);
SELECT results_eq(
    $$SELECT c ->> 'slug', (c ->> 'rank')::int, (c ->> 'projected_cost_usd')::numeric,
             (c ->> 'effective_quality')::numeric
        FROM jsonb_array_elements(pg_temp.route('capped', 'general', 1000, 1000) -> 'candidates') c$$,
    $$VALUES ('h_winner', 0, 0.004, 0.8)$$,
    'the only survivor is ranked 0 with its projected cost and effective quality'
);
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug', (r ->> 'min_quality')::numeric
        FROM pg_temp.route('capped', 'general', 1000, 1000) r$$,
    $$VALUES ('m_allowed_veto_applied', 'h_winner', 0.68)$$,
    'h_winner wins; a vetoed model was cheaper, so the rule is m_allowed_veto_applied; the floor is general''s'
);
SELECT is(
    (SELECT jsonb_array_length(r -> 'candidates') + jsonb_array_length(r -> 'dropped')
       FROM pg_temp.route('capped', 'general', 1000, 1000) r),
    (SELECT count(*)::int FROM routing.models),
    'every catalog model appears exactly once, as a candidate or as dropped'
);
SELECT ok(
    pg_temp.route('capped', 'general', 1000, 1000) ?& ARRAY['decision_rule', 'chosen_model_slug', 'min_quality', 'candidates', 'dropped'],
    'the document has decision_rule, chosen_model_slug, min_quality, candidates and dropped'
);
-- Without the per-call cap the budget gate lets the pricey models through.
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(pg_temp.route('uncapped', 'general', 1000, 1000))$$,
    $$VALUES ('h_winner', 0), ('f_pricey', 1)$$,
    'without a per-call cap, f_pricey survives (o6 still cools down, o5 is still below the floor)'
);
SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(pg_temp.route('uncapped', 'general', 1000, 1000))
       WHERE slug LIKE 'o%'$$,
    $$VALUES ('o1_price_and_q', 'not_enrolled_no_price'), ('o2_q_and_veto', 'not_enrolled_no_q_prior'),
             ('o3_veto_and_disabled', 'm_allowed_veto'), ('o4_disabled_and_floor', 'disabled'),
             ('o5_floor_and_budget', 'below_quality_floor'), ('o6_budget_and_cooling', 'cooling_down')$$,
    'with the budget gate passed, o6 falls at the next one (cooldown)'
);

--------------------------------------------------------------------------- tie-breaks

-- Ranked by input+output price per Mtok, then higher effective quality, then slug; NOT by
-- projected cost: with 1000 input and 10 max tokens, t_e projects the lowest cost but has
-- the highest price per Mtok.
SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('t_a', 2, 2, 0.7);
SELECT pg_temp.model('t_b', 1, 3, 0.7);
SELECT pg_temp.model('t_c', 3, 1, 0.9);
SELECT pg_temp.model('t_d', 1, 1, 0.69);
SELECT pg_temp.model('t_e', 0.5, 10, 0.9);
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(pg_temp.route('uncapped', 'general', 1000, 10))$$,
    $$VALUES ('t_d', 0), ('t_c', 1), ('t_a', 2), ('t_b', 3), ('t_e', 4)$$,
    'ranked by price per Mtok ascending, then effective quality descending, then slug ascending'
);
SELECT is(
    pg_temp.route('uncapped', 'general', 1000, 10) ->> 'decision_rule',
    'cheapest_clearing_floor',
    'no veto: cheapest_clearing_floor'
);
SELECT ok(
    (SELECT (pg_temp.route('uncapped', 'general', 1000, 10) -> 'candidates' -> 4 ->> 'projected_cost_usd')::numeric
          < (pg_temp.route('uncapped', 'general', 1000, 10) -> 'candidates' -> 0 ->> 'projected_cost_usd')::numeric),
    'the last-ranked candidate projects a lower cost than the winner (ranking is by price, not projection)'
);

------------------------------------------------------------- projected cost, rounded

SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('r_round', 1.2345678, 2.0000005, 0.9);
-- 1000 * 1.2345678 / 1e6 + 1000 * 2.0000005 / 1e6 = 0.0032345683 (v0.3: 10 decimals, no
-- longer 0.003235)
SELECT is(
    pg_temp.route('uncapped', 'general', 1000, 1000) -> 'candidates' -> 0 ->> 'projected_cost_usd',
    '0.0032345683',
    'projected cost = in x price_in / 1e6 + max x price_out / 1e6, rounded half up to 10 decimals'
);
SELECT is(
    pg_temp.route('uncapped', 'general', 1000, 1000) ->> 'projected_cost_usd',
    '0.0032345683',
    'the winner''s projected cost is reported at the top level too'
);
-- 1 * 0.00004 / 1e6 + 1 * 0.00004 / 1e6 = 0.00000000008 -> 0.0000000001; 0 input tokens
-- are allowed.
SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('r_tiny', 0.00004, 0.00004, 0.9);
SELECT results_eq(
    $$VALUES ((pg_temp.route('uncapped', 'general', 1, 1) ->> 'projected_cost_usd')::numeric),
             ((pg_temp.route('uncapped', 'general', 0, 1) ->> 'projected_cost_usd')::numeric)$$,
    $$VALUES (0.0000000001), (0.0000000000)$$,
    'sub-nano-dollar projections round to 10 decimals (0.00000000008 -> 0.0000000001, 0.00000000004 -> 0)'
);

---------------------------------------------------------------------------- the veto

SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('w_allowed', 2, 2, 0.8);
SELECT pg_temp.model('v_dearer', 3, 3, 0.9, false);
SELECT is(
    pg_temp.route('uncapped', 'general', 100, 100) ->> 'decision_rule', 'cheapest_clearing_floor',
    'a vetoed model dearer than the winner: cheapest_clearing_floor'
);
SELECT pg_temp.model('v_equal', 1, 3, 0.9, NULL);
SELECT is(
    pg_temp.route('uncapped', 'general', 100, 100) ->> 'decision_rule', 'cheapest_clearing_floor',
    'a vetoed model exactly as dear as the winner: still cheapest_clearing_floor (cheaper means strictly)'
);
SELECT pg_temp.model('v_cheaper', 1, 1, 0.9, NULL);
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug' FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('m_allowed_veto_applied', 'w_allowed')$$,
    'a vetoed (m_allowed NULL) model cheaper than the winner: m_allowed_veto_applied, and the winner is unchanged'
);
UPDATE routing.models SET m_allowed = true WHERE slug = 'v_cheaper';
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug' FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('cheapest_clearing_floor', 'v_cheaper')$$,
    'only m_allowed = true admits: the same model allowed wins'
);

----------------------------------------------------------------- no candidate at all

SELECT pg_temp.reset_catalog();
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug', r -> 'candidates', r -> 'dropped'
        FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('no_candidate_enrolled', NULL::text, '[]'::jsonb, '[]'::jsonb)$$,
    'an empty catalog: no_candidate_enrolled, no model, empty lists'
);
SELECT pg_temp.model('n_no_price', NULL, 1, 0.9);
SELECT pg_temp.model('n_no_q', 1, 1, NULL);
SELECT pg_temp.model('n_vetoed', 1, 1, 0.9, false);
SELECT pg_temp.model('n_disabled', 1, 1, 0.9, true, false);
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug', r -> 'candidates'
        FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('no_candidate_enrolled', NULL::text, '[]'::jsonb)$$,
    'every model falls at the price, q_prior, veto or enabled gate: no_candidate_enrolled'
);
SELECT pg_temp.model('n_low_q', 1, 1, 0.5);
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug', r -> 'candidates'
        FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('no_candidate_clears_floor', NULL::text, '[]'::jsonb)$$,
    'one model falls at the quality floor: no_candidate_clears_floor'
);
DELETE FROM routing.models WHERE slug = 'n_low_q';
SELECT pg_temp.model('n_pricey', 10, 10, 0.9);
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug'
        FROM pg_temp.route('capped', 'general', 1000, 1000) r$$,
    $$VALUES ('no_candidate_clears_floor', NULL::text)$$,
    'one model falls at the per-call budget: no_candidate_clears_floor'
);
SELECT is(
    pg_temp.route('uncapped', 'general', 1000, 1000) ->> 'chosen_model_slug', 'n_pricey',
    'the same model without a per-call cap is chosen (the control)'
);
-- Cooldown is the third gate of no_candidate_clears_floor in the contract, but it can
-- never leave the request without a candidate: when every otherwise-eligible model is
-- cooling down, cooldowns are ignored.
SELECT pg_temp.cool('n_pricey', '2030-01-01 13:00+00');
SELECT results_eq(
    $$SELECT r ->> 'decision_rule', r ->> 'chosen_model_slug', r -> 'cooldowns_ignored'
        FROM pg_temp.route('uncapped', 'general', 1000, 1000) r$$,
    $$VALUES ('m_allowed_veto_applied', 'n_pricey', 'true'::jsonb)$$,
    'the only eligible model cooling down is still chosen (cooldown bypass), never no_candidate (n_vetoed is cheaper: veto applied)'
);

----------------------------------------------------------- cooldowns and the bypass

SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('k1', 1, 1, 0.9);
SELECT pg_temp.model('k2', 2, 2, 0.9);
SELECT pg_temp.model('k_low_q', 0.1, 0.1, 0.1);
SELECT pg_temp.cool('k1', '2030-01-01 13:00+00');
SELECT pg_temp.cool('k2', '2030-01-01 12:30+00');
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(pg_temp.route('uncapped', 'general', 100, 100))$$,
    $$VALUES ('k1', 0), ('k2', 1)$$,
    'every otherwise-eligible model cooling down: cooldowns ignored, ranked as usual'
);
SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(pg_temp.route('uncapped', 'general', 100, 100))$$,
    $$VALUES ('k_low_q', 'below_quality_floor')$$,
    'under the bypass nothing is dropped for cooling_down (a model failing an earlier gate does not count as eligible)'
);
SELECT pg_temp.model('k3', 3, 3, 0.9);
SELECT results_eq(
    $$SELECT r ->> 'chosen_model_slug', r -> 'cooldowns_ignored' FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('k3', 'false'::jsonb)$$,
    'one eligible model not cooling down: it wins over the cheaper cooling ones'
);
SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(pg_temp.route('uncapped', 'general', 100, 100)) WHERE reason = 'cooling_down'$$,
    $$VALUES ('k1', 'cooling_down'), ('k2', 'cooling_down')$$,
    'the cooling models are dropped as cooling_down'
);
-- p_as_of decides who is cooling: k2 until 12:30, k1 until 13:00.
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(pg_temp.route('uncapped', 'general', 100, 100, '2030-01-01 12:45+00'))$$,
    $$VALUES ('k2', 0), ('k3', 1)$$,
    'at 12:45 k2''s cooldown is over and k1''s is not'
);
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(pg_temp.route('uncapped', 'general', 100, 100, '2030-01-01 13:00:01+00'))$$,
    $$VALUES ('k1', 0), ('k2', 1), ('k3', 2)$$,
    'after 13:00 no model is cooling down'
);
SELECT results_eq(
    $$SELECT * FROM pg_temp.ranked(pg_temp.route('uncapped', 'general', 100, 100, '2030-01-01 13:00+00'))$$,
    $$VALUES ('k1', 0), ('k2', 1), ('k3', 2)$$,
    'at cooling_until itself the cooldown is over (cooling means cooling_until > p_as_of)'
);

-------------------------------------------------------------------------------- floors

SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('u_hi', 2, 2, 0.55);
SELECT pg_temp.model('u_lo', 1, 1, 0.45);
SELECT results_eq(
    $$SELECT (r ->> 'min_quality')::numeric, r ->> 'chosen_model_slug'
        FROM pg_temp.route('uncapped', 'task-type-nobody-listed', 100, 100) r$$,
    $$VALUES (0.5, 'u_hi')$$,
    'a task type not in task_floors gets the floor 0.5'
);
SELECT results_eq(
    $$SELECT * FROM pg_temp.dropped(pg_temp.route('uncapped', 'task-type-nobody-listed', 100, 100))$$,
    $$VALUES ('u_lo', 'below_quality_floor')$$,
    'a model below 0.5 falls at the default floor'
);
SELECT results_eq(
    $$SELECT (r ->> 'min_quality')::numeric, r ->> 'decision_rule'
        FROM pg_temp.route('uncapped', 'chat', 100, 100) r$$,
    $$VALUES (0.58, 'no_candidate_clears_floor')$$,
    'a listed task type uses its own floor (chat 0.58)'
);
SELECT ok(
    pg_temp.route('uncapped', 'chat', 100, 100) -> 'dropped' @> '[{"slug": "u_hi", "reason": "below_quality_floor"}]',
    'u_hi (0.55) falls below chat''s floor'
);

--------------------------------------------------------------------- learned quality

-- v0.3: the estimate (k q_prior + sum w x) / (k + sum w), k = 10, moves with every label
-- (tests/pgtap/learned_quality.sql covers the decay and the draws). L1 has a strong prior
-- but the judge scores it 2/5 on general: x = (2 - 1) / 4 = 0.25. The labels are given at
-- pg_temp.route's instant, so they weigh 1.
SELECT pg_temp.reset_catalog();
SELECT pg_temp.model('l1', 1, 1, 0.9);
SELECT pg_temp.model('l2', 2, 2, 0.8);
INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples, score_sum, label_weight, weighted_score, weights_at)
VALUES ('l1', 'general', 1, 2, 1, 0.25, '2030-01-01 12:00:00+00');
SELECT results_eq(
    $$SELECT r ->> 'chosen_model_slug', (r -> 'candidates' -> 0 ->> 'effective_quality')::numeric,
             r -> 'candidates' -> 0 ->> 'quality_source'
        FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('l1', 0.8409, 'learned')$$,
    'one label moves the estimate at once, no cliff: (10 * 0.9 + 0.25) / 11 = 0.8409'
);
UPDATE routing.model_task_quality SET judged_samples = 29, score_sum = 58, label_weight = 29, weighted_score = 29 * 0.25
 WHERE model_slug = 'l1';
SELECT results_eq(
    $$SELECT r ->> 'chosen_model_slug', (SELECT (d ->> 'effective_quality')::numeric
                                            FROM jsonb_array_elements(r -> 'dropped') d
                                           WHERE d ->> 'slug' = 'l1')
        FROM pg_temp.route('uncapped', 'general', 100, 100) r$$,
    $$VALUES ('l2', 0.4167)$$,
    '29 labels at 0.25 pull l1 to (9 + 7.25) / 39 = 0.4167: it falls below the floor before any min_judged_samples'
);
SELECT is(
    pg_temp.route('uncapped', 'code', 100, 100) ->> 'chosen_model_slug', 'l1',
    'learned quality is per task type: l1''s general labels do not touch code'
);
UPDATE routing.settings SET min_judged_samples = 1000;
SELECT is(
    pg_temp.route('uncapped', 'general', 100, 100) ->> 'chosen_model_slug', 'l2',
    'routing.settings.min_judged_samples switches nothing any more (1000: the 29 labels still count)'
);
UPDATE routing.settings SET min_judged_samples = 30;
-- A weak prior lifted by good labels: 90 labels at 5/5, (10 * 0.3 + 90) / 100 = 0.93.
UPDATE routing.models SET q_prior = 0.3 WHERE slug = 'l2';
INSERT INTO routing.model_task_quality (model_slug, task_type, judged_samples, score_sum, label_weight, weighted_score, weights_at)
VALUES ('l2', 'reasoning', 90, 450, 90, 90, '2030-01-01 12:00:00+00');
SELECT results_eq(
    $$SELECT c ->> 'slug', (c ->> 'effective_quality')::numeric
        FROM jsonb_array_elements(pg_temp.route('uncapped', 'reasoning', 100, 100) -> 'candidates') c
       ORDER BY (c ->> 'rank')::int$$,
    $$VALUES ('l1', 0.9), ('l2', 0.93)$$,
    'learned quality (0.93) also admits a model whose prior (0.3) is below the floor (reasoning 0.88)'
);

------------------------------------------------------------------------ bad arguments

SELECT alike(pg_temp.error_of($$SELECT routing.choose_route(NULL, 'general', 1, 1)$$),
    '22023: %p_agent_id%', 'NULL p_agent_id: 22023 naming p_agent_id');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', NULL, 1, 1)$$),
    '22023: %p_task_type%', 'NULL p_task_type: 22023 naming p_task_type');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', '', 1, 1)$$),
    '22023: %p_task_type%', 'empty p_task_type: 22023 naming p_task_type');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', 'general', NULL, 1)$$),
    '22023: %p_input_tokens%', 'NULL p_input_tokens: 22023 naming p_input_tokens');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', 'general', -1, 1)$$),
    '22023: %p_input_tokens%', 'negative p_input_tokens: 22023 naming p_input_tokens');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', 'general', 1, NULL)$$),
    '22023: %p_max_tokens%', 'NULL p_max_tokens: 22023 naming p_max_tokens');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', 'general', 1, -1)$$),
    '22023: %p_max_tokens%', 'negative p_max_tokens: 22023 naming p_max_tokens');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-00000000c001', 'general', 1, 1, NULL)$$),
    '22023: %p_as_of%', 'NULL p_as_of: 22023 naming p_as_of');
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-0000000dead0', 'general', 1, 1)$$),
    'P0002: %00000000-0000-4000-8000-0000000dead0%', 'unknown agent: P0002 naming the agent id');
-- Arguments are checked before state: an unknown agent with a bad argument gets 22023.
SELECT alike(pg_temp.error_of($$SELECT routing.choose_route('00000000-0000-4000-8000-0000000dead0', 'general', -5, 1)$$),
    '22023: %p_input_tokens%', 'a bad argument wins over an unknown agent (22023, not P0002)');

SELECT * FROM finish();
ROLLBACK;
