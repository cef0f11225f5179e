-- pgTAP for the route_snapshots change: the compact explanation insert_decision stores,
-- the shared content-addressed snapshot, routing.explain_outcome giving back exactly the
-- document choose_route returned, and failover from the compact form.
-- tests/python/test_explain_outcome.py compares many random decisions.
BEGIN;
SELECT plan(27);

\ir helpers/error_of.sql

-- Fixture: four chat models ranked s_a < s_b < s_c < s_d by price; one vetoed.
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('s_a', 'p1', 'a-1', 1, 2, 0.80, true),
       ('s_b', 'p2', 'b-1', 2, 3, 0.80, true),
       ('s_c', 'p3', 'c-1', 3, 4, 0.80, true),
       ('s_d', 'p4', 'd-1', 4, 5, 0.80, true),
       ('s_v', 'p5', 'v-1', 0.5, 0.5, 0.90, false);
INSERT INTO routing.agents (id, tenant_id, name, per_call_cap_usd, daily_cap_usd) VALUES
    ('00000000-0000-4000-8000-0000000e0001', '00000000-0000-4000-8000-0000000e0000', 'plain',  NULL,  NULL),
    ('00000000-0000-4000-8000-0000000e0002', '00000000-0000-4000-8000-0000000e0000', 'capped', 0.004, NULL),
    ('00000000-0000-4000-8000-0000000e0003', '00000000-0000-4000-8000-0000000e0000', 'daily',  NULL,  0.001);
\set plain '''00000000-0000-4000-8000-0000000e0001'''
\set capped '''00000000-0000-4000-8000-0000000e0002'''
\set daily '''00000000-0000-4000-8000-0000000e0003'''

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'route_snapshots', 'routing.route_snapshots exists');
SELECT has_function('routing', 'explain_outcome', ARRAY['bigint'], 'routing.explain_outcome(bigint) exists');
SELECT function_returns('routing', 'explain_outcome', ARRAY['bigint'], 'jsonb', 'explain_outcome returns jsonb');
SELECT ok(has_function_privilege('routing_readonly', 'routing.explain_outcome(bigint)', 'EXECUTE')
          AND has_function_privilege('routing_ops', 'routing.explain_outcome(bigint)', 'EXECUTE'),
          'routing_readonly and routing_ops may explain an outcome');
SELECT ok(NOT has_function_privilege('routing_app', 'routing._expand_explanation(jsonb)', 'EXECUTE')
          AND NOT has_function_privilege('routing_app', 'routing._expand_candidates(jsonb)', 'EXECUTE'),
          '_expand_explanation and _expand_candidates are private');

-------------------------------------------------------------- the document, given back

SELECT routing.choose_route(:plain, 'general', 1000, 500) AS doc1 \gset
SELECT * FROM routing.insert_decision('s-1', :plain, 'general', 1000, 500) \gset d1_
SELECT is(routing.explain_outcome(:d1_outcome_id), :'doc1'::jsonb,
          'explain_outcome is choose_route''s document (same transaction, same now())');
SELECT ok((SELECT explanation ? 'snapshot' AND NOT explanation ? 'dropped' FROM routing.routing_outcomes WHERE id = :d1_outcome_id),
          'the outcome stores a snapshot key, not the dropped list');
SELECT is((SELECT explanation -> 'dropped_counts' FROM routing.routing_outcomes WHERE id = :d1_outcome_id),
          '{"m_allowed_veto": 1}'::jsonb, 'it keeps the dropped models'' counts by reason');
SELECT is((SELECT (explanation ->> 'candidate_count')::int FROM routing.routing_outcomes WHERE id = :d1_outcome_id),
          4, 'and how many candidates there were');
SELECT is(routing._explain_route(NULL, 'general', 1000, 500, now(), 'compact'),
          routing._explain_route(NULL, 'general', 1000, 500, now(), 'snapshot') - 'snapshot_candidates' - 'snapshot_dropped',
          'the router''s compact form is its snapshot form without the two lists, under the same key');
SELECT is((SELECT jsonb_build_array(s.candidates, s.dropped) FROM routing.route_snapshots s
            WHERE s.snapshot_key = decode((SELECT explanation ->> 'snapshot' FROM routing.routing_outcomes WHERE id = :d1_outcome_id), 'hex')),
          (SELECT jsonb_build_array(r -> 'snapshot_candidates', r -> 'snapshot_dropped')
             FROM routing._explain_route(NULL, 'general', 1000, 500, now(), 'snapshot') r),
          'the stored snapshot holds the lists of the key it is stored under');
SELECT alike(pg_temp.error_of($$SELECT routing._explain_route(NULL, 'general', 1, 1, now(), 'whole')$$), '22023: %',
          'an unknown router form is 22023');

SELECT * FROM routing.insert_decision('s-2', :plain, 'general', 37, 9) \gset d2_
SELECT is((SELECT count(*) FROM routing.route_snapshots), 1::bigint,
          'other token counts, same catalog state: one shared snapshot');
SELECT is((SELECT explain_outcome -> 'candidates' -> 0 ->> 'projected_cost_usd' FROM routing.explain_outcome(:d2_outcome_id)),
          '0.0000550000', 'projected costs are derived again from the outcome''s token counts (37 in, 9 out on s_a)');

-- Per-call cap: models dropped by exceeds_budget_cap keep their projected cost.
SELECT routing.choose_route(:capped, 'general', 1000, 500) AS doc3 \gset
SELECT * FROM routing.insert_decision('s-3', :capped, 'general', 1000, 500) \gset d3_
SELECT is(routing.explain_outcome(:d3_outcome_id), :'doc3'::jsonb, 'a capped decision is given back exactly');
SELECT is((SELECT explanation -> 'dropped_counts' ->> 'exceeds_budget_cap' FROM routing.routing_outcomes WHERE id = :d3_outcome_id),
          '2', '... two models over the per-call cap');

-- Cooldowns: the cooling model is dropped with its cooling_until.
INSERT INTO routing.model_cooldowns (model_slug, cooling_until) VALUES ('s_a', now() + interval '10 minutes');
SELECT routing.choose_route(:plain, 'general', 1000, 500) AS doc4 \gset
SELECT * FROM routing.insert_decision('s-4', :plain, 'general', 1000, 500) \gset d4_
SELECT is(routing.explain_outcome(:d4_outcome_id), :'doc4'::jsonb, 'a decision around a cooldown is given back exactly');
DELETE FROM routing.model_cooldowns;

-- A refusal before dispatch carries its refusal.
SELECT routing.choose_route(:daily, 'general', 1000, 500) AS doc5 \gset
SELECT * FROM routing.insert_decision('s-5', :daily, 'general', 1000, 500) \gset d5_
SELECT is(routing.explain_outcome(:d5_outcome_id) - 'refusal', :'doc5'::jsonb, 'a refused decision''s document ...');
SELECT is(routing.explain_outcome(:d5_outcome_id) -> 'refusal' ->> 'reason', 'daily_cap_exceeded', '... with its refusal');

-- A later price change is a new snapshot; the old outcome still explains the old state.
UPDATE routing.models SET price_in_per_mtok_usd = 9 WHERE slug = 's_a';
SELECT * FROM routing.insert_decision('s-6', :plain, 'general', 1000, 500) \gset d6_
SELECT isnt((SELECT explanation ->> 'snapshot' FROM routing.routing_outcomes WHERE id = :d6_outcome_id),
            (SELECT explanation ->> 'snapshot' FROM routing.routing_outcomes WHERE id = :d1_outcome_id),
            'a changed catalog is another snapshot');
SELECT is(routing.explain_outcome(:d1_outcome_id), :'doc1'::jsonb, 'an older outcome still explains the catalog it saw');
UPDATE routing.models SET price_in_per_mtok_usd = 1 WHERE slug = 's_a';

------------------------------------------------------------------ bytes, whole documents

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
SELECT 'bulk_' || g, 'pb', 'bulk-' || g, 10 + g, 10 + g, 0.8, g % 2 = 0 FROM generate_series(1, 300) g;
SELECT * FROM routing.insert_decision('s-7', :plain, 'general', 1000, 500) \gset d7_
SELECT cmp_ok((SELECT length((explanation - 'candidates')::text) FROM routing.routing_outcomes WHERE id = :d7_outcome_id),
              '<', (SELECT length((explanation - 'candidates')::text) FROM routing.routing_outcomes WHERE id = :d1_outcome_id) + 60,
              '305 models instead of 5: beside its inline candidates, the explanation grows by a few digits, not by the catalog');
SELECT is((SELECT jsonb_array_length(explanation -> 'candidates') FROM routing.routing_outcomes WHERE id = :d7_outcome_id),
          (SELECT max_attempts FROM routing.settings), 'it keeps max_attempts candidates inline');

-- An outcome stored whole (before this change) is returned as stored.
SELECT * FROM routing.insert_decision('s-8', :plain, 'general', 1000, 500) \gset d8_
SET LOCAL session_replication_role = replica;
UPDATE routing.routing_outcomes SET explanation = :'doc1'::jsonb WHERE id = :d8_outcome_id;
SET LOCAL session_replication_role = origin;
SELECT is(routing.explain_outcome(:d8_outcome_id), :'doc1'::jsonb, 'a whole document is returned as stored');

SELECT alike(pg_temp.error_of('SELECT routing.explain_outcome(-1)'), 'P0002: %', 'an unknown outcome is P0002');
SELECT alike(pg_temp.error_of('SELECT routing.explain_outcome(NULL)'), '22023: %', 'NULL is 22023');

------------------------------------------------------------------------ failover

-- Only three candidates are kept inline; with the second and third disabled after the
-- decision, failover still reaches the fourth, which only the snapshot lists.
DELETE FROM routing.models WHERE slug LIKE 'bulk_%';
UPDATE routing.settings SET max_attempts = 3;
SELECT * FROM routing.insert_decision('s-9', :plain, 'general', 1000, 500) \gset d9_
UPDATE routing.settings SET max_attempts = 6;
UPDATE routing.models SET enabled = false WHERE slug IN ('s_b', 's_c');
SELECT * FROM routing.fail_inference(:d9_inference_id, 'server_error', 'boom', 500) \gset f9_
SELECT is(:'f9_model_slug'::text, 's_d', 'failover reads the full ranked list from the snapshot');

SELECT * FROM finish();
ROLLBACK;
