-- pgTAP for cost by token class at the price in force (changes usage_classes,
-- model_prices, inference_provider_cost_index, and their use in router, route_plans,
-- write_path, integrity): every class, the long-context tier boundary, a price change
-- between decision and completion, back-dating refused, 10-decimal precision, p_usage
-- validation (22023, nothing written), the budget settling on the class cost, and
-- cost_mismatch_24h. The exact sum over random usages is tests/python/test_cost_property.py.
BEGIN;
SELECT plan(66);

-- Fixture. mp_a is priced like a long-context model with every cache class (per Mtok:
-- input 3, output 15, cache read 0.30, 5-minute write 3.75, 1-hour write 6; over 200 k
-- input tokens: input 6, output 22.50, cache read 0.60); it alone clears reasoning (0.88).
-- mp_b has only input 2 and output 8 (its cached tokens bill at input); it wins chat.
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed, endpoint)
VALUES ('mp_a',   'p1', 'a-1',   3,    15,   0.95, true, 'chat'),
       ('mp_b',   'p2', 'b-1',   2,    8,    0.60, true, 'chat'),
       ('mp_emb', 'p1', 'emb-1', 0.02, 0.02, 0.90, true, 'embeddings');
INSERT INTO routing.agents (id, tenant_id, name, per_call_cap_usd, daily_cap_usd) VALUES
    ('00000000-0000-4000-8000-0000000c0001', '00000000-0000-4000-8000-0000000c0000', 'free',   NULL, NULL),
    ('00000000-0000-4000-8000-0000000c0002', '00000000-0000-4000-8000-0000000c0000', 'capped', NULL, 1);
\set free '''00000000-0000-4000-8000-0000000c0001'''
\set capped '''00000000-0000-4000-8000-0000000c0002'''

CREATE FUNCTION pg_temp.attempt(p_request text, p_agent uuid, p_task text, p_in int, p_max int)
RETURNS bigint LANGUAGE sql AS $$
    SELECT d.inference_id FROM routing.insert_decision(p_request, p_agent, p_task, p_in, p_max) d
$$;
CREATE FUNCTION pg_temp.complete(p_inference bigint, p_in int, p_out int, p_usage jsonb)
RETURNS numeric LANGUAGE sql AS $$
    SELECT c.cost_actual_usd
      FROM routing.complete_decision(p_inference, '{}'::jsonb, p_in, p_out, 5, 'provider', p_usage) c
$$;
CREATE FUNCTION pg_temp.status(p_inference bigint) RETURNS text LANGUAGE sql AS $$
    SELECT i.status FROM routing.inferences i WHERE i.id = p_inference
$$;

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'model_prices', 'routing.model_prices exists');
SELECT col_is_pk('routing', 'model_prices', ARRAY['model_slug', 'token_class', 'min_input_tokens', 'effective_from'],
                 'a price row is keyed by model, class, tier and effective_from');
SELECT columns_are('routing', 'model_prices',
                   ARRAY['model_slug', 'token_class', 'usd_per_mtok', 'min_input_tokens', 'effective_from', 'created_at'],
                   'routing.model_prices has the contract''s columns');
SELECT ok((SELECT count(*) = 5 FROM information_schema.columns
            WHERE table_schema = 'routing' AND table_name = 'inferences'
              AND column_name IN ('cache_read_tokens', 'cache_write_tokens', 'cache_write_1h_tokens',
                                  'reasoning_tokens', 'provider_cost_usd')),
          'inferences has the usage-class columns and provider_cost_usd');
SELECT ok(has_function_privilege('routing_admin', 'routing.set_model_price(text, text, numeric, timestamptz, int)', 'EXECUTE')
          AND NOT has_function_privilege('routing_app', 'routing.set_model_price(text, text, numeric, timestamptz, int)', 'EXECUTE'),
          'set_model_price is routing_admin''s, not routing_app''s');
SELECT results_eq(
    $$SELECT token_class, usd_per_mtok, effective_from FROM routing.model_prices WHERE model_slug = 'mp_a' ORDER BY 1$$,
    $$VALUES ('input', 3::numeric, '-infinity'::timestamptz), ('output', 15::numeric, '-infinity'::timestamptz)$$,
    'a model''s catalog prices are its input and output rows, the first ones effective from -infinity (they cover its history)');

SELECT is(routing.set_model_price('mp_a', 'cache_read', 0.30), 'inserted', 'set_model_price adds a cache_read rate');
SELECT is(routing.set_model_price('mp_a', 'cache_read', 0.30), 'unchanged', 'the same call again writes nothing');
SELECT routing.set_model_price('mp_a', 'cache_write', 3.75);
SELECT routing.set_model_price('mp_a', 'cache_write_1h', 6);
SELECT routing.set_model_price('mp_a', 'input', 6, now(), 200001);
SELECT routing.set_model_price('mp_a', 'output', 22.50, now(), 200001);
SELECT routing.set_model_price('mp_a', 'cache_read', 0.60, now(), 200001);
SELECT is((SELECT count(*) FROM routing.catalog_changes WHERE table_name = 'model_prices' AND via = 'set_model_price'),
          6::bigint, 'every price row set_model_price adds is audited, via set_model_price');

------------------------------------------------------------------------- every class

-- Uncached input and output: 1000 x 3 + 200 x 15 = 6000 / 1e6.
SELECT is(pg_temp.complete(pg_temp.attempt('c-plain', :free, 'reasoning', 1000, 200), 1000, 200, NULL),
          0.006, 'input and output at their rates');
-- Cache reads: 200 x 3 + 800 x 0.30 + 200 x 15 = 3840.
SELECT is(pg_temp.complete(pg_temp.attempt('c-read', :free, 'reasoning', 1000, 200), 1000, 200,
                           '{"cache_read_tokens": 800}'),
          0.00384, 'cache reads at the cache_read rate, the rest of the input at the input rate');
-- 5-minute cache writes: 1000 x 3.75 + 200 x 15 = 6750.
SELECT is(pg_temp.complete(pg_temp.attempt('c-write', :free, 'reasoning', 1000, 200), 1000, 200,
                           '{"cache_write_tokens": 1000}'),
          0.00675, 'cache writes at the cache_write rate');
-- 1-hour cache writes: 500 x 3 + 500 x 6 + 200 x 15 = 7500.
SELECT is(pg_temp.complete(pg_temp.attempt('c-write1h', :free, 'reasoning', 1000, 200), 1000, 200,
                           '{"cache_write_1h_tokens": 500}'),
          0.0075, '1-hour cache writes at the cache_write_1h rate, not the 5-minute one');
-- Reasoning tokens are output tokens: the cost of c-plain.
SELECT is(pg_temp.complete(pg_temp.attempt('c-reason', :free, 'reasoning', 1000, 200), 1000, 200,
                           '{"reasoning_tokens": 150}'),
          0.006, 'reasoning tokens are billed as the output they are part of');
SELECT is((SELECT reasoning_tokens FROM routing.inferences i JOIN routing.routing_outcomes o ON o.id = i.outcome_id
            WHERE o.request_id = 'c-reason'), 150, 'the reasoning count is kept on the attempt');
-- All at once: 2500 x 3 + 6000 x 0.30 + 1000 x 3.75 + 500 x 6 + 400 x 15 = 22050.
SELECT is(pg_temp.complete(pg_temp.attempt('c-all', :free, 'reasoning', 10000, 400), 10000, 400,
                           '{"cache_read_tokens": 6000, "cache_write_tokens": 1000, "cache_write_1h_tokens": 500,
                             "reasoning_tokens": 300, "provider_cost_usd": 0.0221}'),
          0.02205, 'every class in one attempt: the sum of its parts');
SELECT results_eq(
    $$SELECT i.cache_read_tokens, i.cache_write_tokens, i.cache_write_1h_tokens, i.reasoning_tokens,
             i.provider_cost_usd, i.cost_usd
        FROM routing.inferences i JOIN routing.routing_outcomes o ON o.id = i.outcome_id
       WHERE o.request_id = 'c-all'$$,
    $$VALUES (6000, 1000, 500, 300, 0.0221::numeric, 0.02205::numeric)$$,
    'the usage parts and the provider''s cost are stored beside the computed cost');
-- A cache class without a rate of its own bills at the input rate: mp_b, 1000 x 2 + 100 x 8.
SELECT is(pg_temp.complete(pg_temp.attempt('c-norate', :free, 'chat', 1000, 100), 1000, 100,
                           '{"cache_read_tokens": 500, "cache_write_tokens": 200}'),
          0.0028, 'a cache class with no rate bills at the input rate');
-- JSON nulls are "not reported".
SELECT is(pg_temp.complete(pg_temp.attempt('c-nulls', :free, 'chat', 1000, 100), 1000, 100,
                           '{"cache_read_tokens": null, "provider_cost_usd": null}'),
          0.0028, 'a JSON null is not reported');

SELECT throws_ok($$UPDATE routing.inferences SET cache_read_tokens = input_tokens + 1 WHERE input_tokens IS NOT NULL$$,
                 '23514', NULL, 'the CHECK keeps cache parts within input_tokens (a direct write)');
SELECT throws_ok($$UPDATE routing.inferences SET reasoning_tokens = -1$$,
                 '23514', NULL, 'the CHECK keeps the parts non-negative (a direct write)');

----------------------------------------------------------------- long-context tier

-- 200000 input tokens: the base rates, 200000 x 3 + 100 x 15.
SELECT is(pg_temp.complete(pg_temp.attempt('t-equal', :free, 'reasoning', 200000, 100), 200000, 100, NULL),
          0.6015, 'input tokens equal to the tier''s threshold - 1 (200000 < 200001): base rates');
-- 200001: the whole request at the tier, 200001 x 6 + 100 x 22.50.
SELECT is(pg_temp.complete(pg_temp.attempt('t-above', :free, 'reasoning', 200001, 100), 200001, 100, NULL),
          1.202256, 'input tokens equal to the threshold (200001): every token at the tier''s rates');
-- The tier's cache_read rate too: 100001 x 6 + 100000 x 0.60 + 100 x 22.50.
SELECT is(pg_temp.complete(pg_temp.attempt('t-cache', :free, 'reasoning', 200001, 100), 200001, 100,
                           '{"cache_read_tokens": 100000}'),
          0.662256, 'cache reads of a tiered request at the tier''s cache_read rate');
-- A class with no tier row keeps its base rate: 100001 x 6 + 100000 x 3.75 + 100 x 22.50.
SELECT is(pg_temp.complete(pg_temp.attempt('t-write', :free, 'reasoning', 200001, 100), 200001, 100,
                           '{"cache_write_tokens": 100000}'),
          0.977256, 'a class without a tier row keeps its base rate in a tiered request');
SELECT is((routing.choose_route(:free, 'reasoning', 200001, 100) ->> 'projected_cost_usd')::numeric,
          1.202256, 'the router projects a tiered request at its tier''s rates');
SELECT is((routing.choose_route(:free, 'reasoning', 200000, 100) ->> 'projected_cost_usd')::numeric,
          0.6015, 'and one token below the tier at the base rates');
SELECT is((SELECT (d.explanation ->> 'projected_cost_usd')::numeric
             FROM routing.routing_outcomes d WHERE d.request_id = 't-above'),
          1.202256, 'insert_decision projects a tiered request at its tier (routed in full, not from the plan)');

---------------------------------------------------------------------------- budgets

-- Reserved at the projection (1000 x 3 + 200 x 15), settled on the class cost (0.00384).
SELECT pg_temp.attempt('b-1', :capped, 'reasoning', 1000, 200) AS b1 \gset
SELECT is((SELECT spent_usd FROM routing.budget_spend WHERE agent_id = :capped), 0.006,
          'the decision reserves its projected cost');
SELECT is(pg_temp.complete(:b1, 1000, 200, '{"cache_read_tokens": 800}'), 0.00384, 'the completion costs its classes');
SELECT is((SELECT spent_usd FROM routing.budget_spend WHERE agent_id = :capped), 0.00384,
          'the daily spend settles on the cost by class, not the projection');
SELECT is((SELECT value FROM routing.integrity_report() WHERE metric = 'budget_spend_drift'), 0::bigint,
          'the running spend matches the ledger');

------------------------------------------------- a price change between decision and completion

-- The attempt was created a minute ago at input 3; the price is 4 from now.
SELECT pg_temp.attempt('p-before', :free, 'reasoning', 1000, 100) AS p_before \gset
UPDATE routing.inferences SET created_at = now() - interval '1 minute' WHERE id = :p_before;
SELECT is(routing.set_model_price('mp_a', 'input', 4), 'inserted', 'a new input price, effective now');
SELECT is((SELECT price_in_per_mtok_usd FROM routing.models WHERE slug = 'mp_a'), 4::numeric,
          'the catalog column shows the input rate in force');
SELECT is(pg_temp.complete(:p_before, 1000, 100, NULL), 0.0045,
          'an attempt created before the change costs the price in force at its created_at (1000 x 3 + 100 x 15)');
SELECT is(pg_temp.complete(pg_temp.attempt('p-after', :free, 'reasoning', 1000, 100), 1000, 100, NULL),
          0.0055, 'an attempt created after it costs the new price (1000 x 4 + 100 x 15)');
SELECT is((SELECT count(*) FROM routing.model_prices WHERE model_slug = 'mp_a' AND token_class = 'input'
              AND min_input_tokens = 0), 2::bigint, 'the old price is kept: a new price is a new row');

-- A price announced for later: the router ranks with it only from then on.
SELECT is(routing.set_model_price('mp_b', 'input', 20, now() + interval '1 hour'), 'inserted', 'a price announced for later is accepted');
SELECT is((SELECT price_in_per_mtok_usd FROM routing.models WHERE slug = 'mp_b'), 2::numeric,
          'the catalog column keeps the rate in force until then');
SELECT is(routing.set_model_price('mp_b', 'input', 10, now() + interval '1 hour'), 'updated',
          'a price not yet in force can be corrected');
SELECT is((routing.choose_route(:free, 'chat', 1000, 100) -> 'candidates' -> 0 ->> 'projected_cost_usd')::numeric,
          0.0028, 'now the router projects mp_b at its current rates');
SELECT is((routing.choose_route(:free, 'chat', 1000, 100, now() + interval '2 hours') -> 'candidates' -> 0 ->> 'projected_cost_usd')::numeric,
          0.0108, 'after the announced change, at the new rate (1000 x 10 + 100 x 8)');
SELECT pg_temp.attempt('p-plan', :free, 'chat', 1000, 100);
-- A plan also ends with its quality tick (half-life / 1024, learned_quality): the earlier of the two.
SELECT is((SELECT valid_until FROM routing.route_plans WHERE task_type = 'chat'),
          least(now() + interval '1 hour',
                (SELECT routing._quality_tick(now(), s.quality_half_life) + s.quality_half_life / 1024
                   FROM routing.settings s)),
          'a route plan is valid only until the next effective_from of a price (or its quality tick''s end)');
SELECT is((routing._explain_from_plan(NULL, 'chat', 1000, 100, now() + interval '2 hours') ->> 'projected_cost_usd')::numeric,
          0.0108, 'past it, insert_decision''s explanation uses the new rate, not the cached plan');

-------------------------------------------------------------------------- back-dating

SELECT throws_ok($$SELECT routing.set_model_price('mp_a', 'input', 1, now() - interval '1 second')$$,
                 '22023', NULL, 'an effective_from in the past is refused');
SELECT throws_ok($$SELECT routing.set_model_price('mp_a', 'reasoning', 1)$$, '22023', NULL, 'an unknown token class is refused');
SELECT throws_ok($$SELECT routing.set_model_price('mp_a', 'input', -1)$$, '22023', NULL, 'a negative price is refused');
SELECT throws_ok($$SELECT routing.set_model_price('mp_nope', 'input', 1)$$, 'P0002', NULL, 'an unknown model is P0002');

---------------------------------------------------------------------------- precision

SELECT is(pg_temp.complete(pg_temp.attempt('e-10', :free, 'embed', 10, 0), 10, 0, NULL), 0.0000002,
          'a 10-token embedding at $0.02 per Mtok costs $0.0000002, not $0');
SELECT is((routing.choose_route(:free, 'embed', 10, 0) ->> 'projected_cost_usd')::numeric, 0.0000002,
          'and is projected at 10 decimals');

---------------------------------------------------------------------------- p_usage

SELECT pg_temp.attempt('u-bad', :free, 'chat', 1000, 100) AS u_bad \gset
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"cached_tokens": 5}')$$, :u_bad),
                 '22023', NULL, 'an unknown key is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"cache_read_tokens": "5"}')$$, :u_bad),
                 '22023', NULL, 'a count that is not a number is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"cache_read_tokens": 1.5}')$$, :u_bad),
                 '22023', NULL, 'a fractional count is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"reasoning_tokens": -1}')$$, :u_bad),
                 '22023', NULL, 'a negative count is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"cache_write_tokens": 2147483648}')$$, :u_bad),
                 '22023', NULL, 'a count over 2^31-1 is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"cache_read_tokens": 600, "cache_write_tokens": 401}')$$, :u_bad),
                 '22023', NULL, 'cache parts above the input tokens are refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"reasoning_tokens": 101}')$$, :u_bad),
                 '22023', NULL, 'reasoning above the output tokens is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '{"provider_cost_usd": -0.01}')$$, :u_bad),
                 '22023', NULL, 'a negative provider cost is refused');
SELECT throws_ok(format($$SELECT pg_temp.complete(%s, 1000, 100, '[1, 2]')$$, :u_bad),
                 '22023', NULL, 'a p_usage that is not an object is refused');
SELECT throws_ok(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', 'boom', p_usage => '{"bogus": 1}')$$, :u_bad),
                 '22023', NULL, 'fail_inference checks p_usage the same way');
SELECT throws_ok(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', 'boom', p_output_tokens => 10,
                                                                 p_usage => '{"reasoning_tokens": 11}')$$, :u_bad),
                 '22023', NULL, 'fail_inference refuses reasoning above the partial output');
SELECT is(pg_temp.status(:u_bad), 'routed', 'a refused p_usage wrote nothing: the attempt is still routed');

-- A failure's partial cost by class: 1000 x 2 + 50 x 8 on mp_b.
SELECT is((SELECT f.action FROM routing.fail_inference(:u_bad, 'server_error', 'boom', p_output_tokens => 50,
                                                       p_usage => '{"reasoning_tokens": 20}') f),
          'failover', 'a failure with usage parts is recorded');
SELECT results_eq(
    format($$SELECT i.reasoning_tokens, i.cost_usd FROM routing.inferences i WHERE i.id = %s$$, :u_bad),
    $$VALUES (20, 0.0024::numeric)$$,
    'fail_inference keeps the partial usage parts and prices them');

------------------------------------------------------------------------ cost_mismatch_24h

-- c-all reported 0.0221 for 0.02205 (0.2 % apart: no mismatch); this one 0.01 for 0.0028.
SELECT pg_temp.complete(pg_temp.attempt('m-1', :free, 'chat', 1000, 100), 1000, 100, '{"provider_cost_usd": 0.01}');
SELECT is((SELECT value FROM routing.integrity_report(clock_timestamp()) WHERE metric = 'cost_mismatch_24h'), 1::bigint,
          'cost_mismatch_24h counts the attempt whose two costs differ by over 1 % and $0.000001');
SELECT is((SELECT kind FROM routing.integrity_metrics WHERE metric = 'cost_mismatch_24h'), 'info',
          'cost_mismatch_24h is an info metric');

SELECT * FROM finish();
ROLLBACK;
