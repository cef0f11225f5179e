-- pgTAP: routing_ledger:judge_queue — the queue view, claims with a lease, judgements
-- feeding the learned per-task quality the router uses.
BEGIN;
SELECT plan(77);
\ir helpers/plan_of.sql

-- Structure -------------------------------------------------------------------------

SELECT has_view('routing', 'judge_queue', 'view judge_queue exists');
SELECT has_column('routing', 'judge_queue', 'id', 'judge_queue has the outcome id');
SELECT has_function('routing', 'claim_judge_batch', ARRAY['text', 'integer'],
                    'claim_judge_batch(p_worker, p_limit) exists, the contract''s signature');
SELECT has_function('routing', 'record_judgement', ARRAY['bigint', 'text', 'numeric', 'text', 'text'],
                    'record_judgement(p_outcome_id, p_status, p_score, p_rationale, p_judge_model) exists');
SELECT function_returns('routing', 'claim_judge_batch', ARRAY['text', 'integer'], 'setof record',
                        'claim_judge_batch returns the claimed outcomes');
SELECT is_definer('routing', 'claim_judge_batch', ARRAY['text', 'integer'], 'claim_judge_batch is SECURITY DEFINER');
SELECT is_definer('routing', 'record_judgement', ARRAY['bigint', 'text', 'numeric', 'text', 'text'], 'record_judgement is SECURITY DEFINER');
SELECT function_privs_are('routing', 'claim_judge_batch', ARRAY['text', 'integer'], 'routing_judge',
                          ARRAY['EXECUTE'], 'routing_judge may claim');
SELECT function_privs_are('routing', 'record_judgement', ARRAY['bigint', 'text', 'numeric', 'text', 'text'], 'routing_judge',
                          ARRAY['EXECUTE'], 'routing_judge may record');
SELECT function_privs_are('routing', 'record_judgement', ARRAY['bigint', 'text', 'numeric', 'text', 'text'], 'routing_app',
                          ARRAY[]::text[], 'routing_app may not record judgements');
SELECT table_privs_are('routing', 'judge_queue', 'routing_judge', ARRAY['SELECT'], 'routing_judge reads the queue');
SELECT table_privs_are('routing', 'judge_queue', 'routing_readonly', ARRAY['SELECT'], 'routing_readonly reads the queue');

-- Traffic through the write path --------------------------------------------------------

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('tap-small', 'tap', 'small', 0.1, 0.3, 0.8, true),
       ('tap-large', 'tap', 'large', 2.0, 6.0, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name, status) VALUES
    ('a0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000001', 'tap agent', 'active'),
    ('a0000000-0000-4000-8000-000000000002', 'f0000000-0000-4000-8000-000000000001', 'suspended agent', 'suspended');

CREATE TEMP TABLE t_req (n int PRIMARY KEY, outcome_id bigint, inference_id bigint);
INSERT INTO t_req
SELECT g, d.outcome_id, d.inference_id
  FROM generate_series(1, 6) g,
       routing.insert_decision('judge-' || g, 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20,
                               jsonb_build_object('q', g)) d;
SELECT count(*) FROM t_req, routing.complete_decision(t_req.inference_id, jsonb_build_object('a', t_req.n), 100, 20, 500);

-- 7: fails over from tap-small to tap-large, which answers.
INSERT INTO t_req
SELECT 7, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-7', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
UPDATE t_req SET inference_id = f.next_inference_id
  FROM routing.fail_inference((SELECT inference_id FROM t_req WHERE n = 7), 'server_error', 'HTTP 503') f
 WHERE n = 7;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_req WHERE n = 7), '{"a": 7}', 100, 20, 500);
-- 8: gives up (bad_request); 9: in flight; 10: refused before dispatch; 11: rejected (no candidate).
INSERT INTO t_req SELECT 8, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-8', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
SELECT count(*) FROM routing.fail_inference((SELECT inference_id FROM t_req WHERE n = 8), 'bad_request', 'HTTP 400');
INSERT INTO t_req SELECT 9, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-9', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
INSERT INTO t_req SELECT 10, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-10', 'a0000000-0000-4000-8000-000000000002', 'chat', 100, 20) d;
UPDATE routing.task_floors SET min_quality = 0.99 WHERE task_type = 'reasoning';
INSERT INTO t_req SELECT 11, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-11', 'a0000000-0000-4000-8000-000000000001', 'reasoning', 100, 20) d;

SELECT results_eq(
    $$SELECT outcome_status FROM routing.routing_outcomes o JOIN t_req t ON t.outcome_id = o.id WHERE t.n >= 8 ORDER BY t.n$$,
    $$VALUES ('failed_bad_request'::text), (NULL), ('failed_pre_dispatch'), ('rejected')$$,
    'fixture: a failed, an in-flight, a refused and a rejected request');

-- The queue -----------------------------------------------------------------------------

SELECT results_eq($$SELECT id FROM routing.judge_queue ORDER BY id$$,
                  $$SELECT outcome_id FROM t_req WHERE n <= 7 ORDER BY outcome_id$$,
                  'judge_queue holds exactly the succeeded outcomes');
SELECT is_empty($$SELECT q.id FROM routing.judge_queue q JOIN routing.routing_outcomes o ON o.id = q.id
                   WHERE o.outcome_status IS DISTINCT FROM 'succeeded'$$,
                'no rejected, failed_pre_dispatch, failed or in-flight outcome is ever queued');
-- What waiting for the judge means is written once (routing._outcome_awaits_judge): the
-- view and the claim test it, and it is the predicate they spelled out before.
SELECT results_eq(
    $$SELECT routing._outcome_awaits_judge(v.s, v.i, v.o)
        FROM (VALUES (1, 'unlabeled', 1::bigint, 'succeeded'), (2, 'claimed', 1, 'succeeded'),
                     (3, 'unlabeled', NULL, 'succeeded'), (4, 'unlabeled', 1, 'failed_bad_request'),
                     (5, NULL, 1, 'succeeded'), (6, NULL, NULL, NULL)) v (n, s, i, o) ORDER BY v.n$$,
    $$VALUES (true), (false), (false), (false), (NULL::boolean), (false)$$,
    'an outcome waits for the judge when it succeeded, names its attempt and is unlabeled');
SELECT ok(has_function_privilege('routing_judge', 'routing._outcome_awaits_judge(text, bigint, text)', 'EXECUTE')
          AND has_function_privilege('routing_readonly', 'routing._outcome_awaits_judge(text, bigint, text)', 'EXECUTE')
          AND NOT has_function_privilege('routing_app', 'routing._outcome_awaits_judge(text, bigint, text)', 'EXECUTE'),
          'the roles that read the queue may run its test; routing_app may not');
SET LOCAL enable_seqscan = off;
-- Inlined and answered by the partial index on unlabeled outcomes (routing_outcomes_judge_unlabeled,
-- or each partition's on a partitioned ledger): neither the call nor judge_status is left as a filter.
SELECT pg_temp.plan_of($$SELECT o.id FROM routing.routing_outcomes o
                          WHERE routing._outcome_awaits_judge(o.judge_status, o.inference_id, o.outcome_status)
                          ORDER BY o.id LIMIT 10$$) AS claim_plan \gset
SELECT ok(:'claim_plan' ~ 'Index Scan' AND :'claim_plan' !~ 'judge_status' AND :'claim_plan' !~ '_outcome_awaits_judge',
          'the claim''s queue query, written with the function, is inlined and answered by the partial index on unlabeled outcomes');
RESET enable_seqscan;

-- Claims --------------------------------------------------------------------------------

CREATE TEMP TABLE t_claim AS
SELECT 'w1'::text AS worker, c.* FROM routing.claim_judge_batch('w1', 2) c;
SELECT results_eq($$SELECT outcome_id FROM t_claim ORDER BY outcome_id$$,
                  $$SELECT outcome_id FROM t_req WHERE n <= 2 ORDER BY outcome_id$$,
                  'a claim takes the oldest queued outcomes, up to p_limit');
SELECT results_eq(
    $$SELECT task_type, model_slug, request_payload, response_payload, claim_expires_at FROM t_claim ORDER BY outcome_id LIMIT 1$$,
    $$VALUES ('chat'::text, 'tap-small'::text, '{"q": 1}'::jsonb, '{"a": 1}'::jsonb, now() + interval '5 minutes')$$,
    'a claim returns what the judge needs, and the lease comes from routing.settings');
SELECT results_eq(
    $$SELECT judge_status, judge_claimed_by FROM routing.routing_outcomes WHERE id IN (SELECT outcome_id FROM t_claim)$$,
    $$VALUES ('claimed'::text, 'w1'::text), ('claimed', 'w1')$$,
    'claimed outcomes record the worker');
SELECT is((SELECT count(*) FROM routing.judge_queue), 5::bigint, 'claimed outcomes leave the queue');

INSERT INTO t_claim SELECT 'w2', c.* FROM routing.claim_judge_batch('w2', 10) c;
SELECT is((SELECT count(*) FROM t_claim WHERE worker = 'w2'), 5::bigint, 'a second worker gets the rest');
SELECT is((SELECT count(DISTINCT outcome_id) FROM t_claim), 7::bigint, 'no outcome was handed to two workers');
SELECT results_eq($$SELECT chosen_model_slug, model_slug FROM t_claim WHERE outcome_id = (SELECT outcome_id FROM t_req WHERE n = 7)$$,
                  $$VALUES ('tap-small'::text, 'tap-large'::text)$$,
                  'after a failover the judge sees the chosen and the answering model');
SELECT is_empty($$SELECT * FROM routing.claim_judge_batch('w3', 10)$$, 'an empty queue claims nothing');

-- A lease that ran out: the outcome is claimable again.
SELECT is((SELECT count(*) FROM routing._claim_judge_batch('w3', 3, now() + interval '6 minutes')), 3::bigint,
          'claims whose lease ended are claimed again');
SELECT results_eq(
    $$SELECT judge_claimed_by, judge_claim_expires_at FROM routing.routing_outcomes WHERE judge_claimed_by = 'w3' LIMIT 1$$,
    $$VALUES ('w3'::text, now() + interval '11 minutes')$$,
    'a reclaimed outcome belongs to the new worker with a new lease');
SELECT is((SELECT value FROM routing.integrity_report(now() + interval '6 minutes') WHERE metric = 'judge_claims_expired'),
          4::bigint, 'the report counts the claims still expired');

-- Judgements ----------------------------------------------------------------------------

SELECT results_eq(
    $$SELECT judge_status, judge_score, model_slug, task_type, judged_samples, learned_quality
        FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 1), 'labeled', 4, 'good', 'judge-1')$$,
    $$VALUES ('labeled'::text, 4::numeric, 'tap-small'::text, 'chat'::text, 1::bigint, 0.75::numeric)$$,
    'a label is recorded and counted: (4 - 1) / 4');
SELECT results_eq(
    $$SELECT judge_status, judge_score, judge_rationale, judge_model, judge_claimed_by, judge_claim_expires_at,
             judge_labeled_at IS NOT NULL
        FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_req WHERE n = 1)$$,
    $$VALUES ('labeled'::text, 4::numeric, 'good'::text, 'judge-1'::text, NULL::text, NULL::timestamptz, true)$$,
    'the outcome carries the label and its claim is released');
SELECT results_eq(
    $$SELECT judged_samples FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 1), 'labeled', 4.0, 'good', 'judge-1')$$,
    $$VALUES (1::bigint)$$,
    'repeating the same judgement is a no-op: the sample is counted once');
SELECT throws_ok(
    $$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 1), 'labeled', 2, 'bad', 'judge-2')$$,
    '55000', NULL, 'a different judgement on a labelled outcome is 55000');
SELECT results_eq(
    $$SELECT judged_samples, learned_quality
        FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 2), 'labeled', 2, 'meh', 'judge-1')$$,
    $$VALUES (2::bigint, 0.5::numeric)$$,
    'the learned quality is the mean score rescaled: ((4 + 2) / 2 - 1) / 4');
SELECT results_eq(
    $$SELECT judge_status, judge_score, judged_samples
        FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 3), 'error', NULL, 'judge timed out', 'judge-1')$$,
    $$VALUES ('error'::text, NULL::numeric, 2::bigint)$$,
    'an error is recorded without a score and teaches nothing');
SELECT results_eq(
    $$SELECT judge_status, judged_samples
        FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 4), 'cannot_evaluate', NULL, 'no reference', 'judge-1')$$,
    $$VALUES ('cannot_evaluate'::text, 2::bigint)$$,
    'cannot_evaluate is recorded without a score');
SELECT results_eq(
    $$SELECT model_slug, judged_samples, learned_quality
        FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 7), 'labeled', 5, 'great', 'judge-1')$$,
    $$VALUES ('tap-large'::text, 1::bigint, 1::numeric)$$,
    'a label credits the model that answered, not the one first chosen');

-- Recording without a claim: an unlabeled outcome may be judged directly.
INSERT INTO t_req SELECT 12, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-12', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_req WHERE n = 12), '{"a": 12}', 100, 20, 500);
SELECT results_eq(
    $$SELECT judge_status, judged_samples FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 12), 'labeled', 1, 'wrong', 'human')$$,
    $$VALUES ('labeled'::text, 3::bigint)$$,
    'an unlabeled outcome can be judged without a claim');
SELECT is((SELECT judged_samples FROM routing.model_task_quality WHERE model_slug = 'tap-small' AND task_type = 'chat'),
          3::bigint, 'model_task_quality holds the samples of each (model, task type)');

-- The router learns from every label (v0.3: no min_judged_samples switch). tap-small's three
-- labels (4, 2, 1: x = 0.75, 0.25, 0) weigh 1 each; with the prior counting as one label
-- its estimate is (0.8 + 1.0) / 4 = 0.45, under the chat floor (0.58), and tap-large wins.
UPDATE routing.settings SET quality_prior_weight = 1;
SELECT results_eq(
    $$SELECT r ->> 'chosen_model_slug', r -> 'dropped' @> '[{"slug": "tap-small", "reason": "below_quality_floor", "effective_quality": 0.4500}]'
        FROM routing.choose_route('a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) r$$,
    $$VALUES ('tap-large'::text, true)$$,
    'choose_route uses the labels at once: with quality_prior_weight 1 tap-small''s estimate is 0.45');
UPDATE routing.settings SET quality_prior_weight = 10;
SELECT is((routing.choose_route('a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) -> 'candidates' -> 0 ->> 'effective_quality'),
          '0.6923', 'with the default prior weight 10 the same labels give (8 + 1) / 13 = 0.6923: tap-small stays');

-- Errors: state -------------------------------------------------------------------------

SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'labeled', 3, NULL, 'judge-1')$$,
                 'P0002', 'record_judgement: unknown outcome 999999', 'an unknown outcome is P0002');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 8), 'labeled', 3, NULL, 'judge-1')$$,
                 '55000', NULL, 'a failed outcome cannot be judged (55000)');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 9), 'labeled', 3, NULL, 'judge-1')$$,
                 '55000', NULL, 'an in-flight outcome cannot be judged (55000)');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 11), 'labeled', 3, NULL, 'judge-1')$$,
                 '55000', NULL, 'a rejected outcome cannot be judged (55000)');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 3), 'labeled', 3, NULL, 'judge-1')$$,
                 '55000', NULL, 'an outcome judged as error is not judged again (55000)');

-- Errors: arguments, checked before state -------------------------------------------------

SELECT throws_ok($$SELECT * FROM routing.record_judgement(NULL, 'labeled', 3, NULL, 'judge-1')$$,
                 '22023', 'record_judgement: p_outcome_id must not be NULL', 'NULL p_outcome_id is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'great', 3, NULL, 'judge-1')$$,
                 '22023', NULL, 'an unknown p_status is 22023, even on an unknown outcome');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, NULL, 3, NULL, 'judge-1')$$,
                 '22023', NULL, 'a NULL p_status is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 5), 'labeled', NULL, NULL, 'judge-1')$$,
                 '22023', NULL, 'a label without a score is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 5), 'labeled', 6, NULL, 'judge-1')$$,
                 '22023', NULL, 'a score above 5 is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 5), 'labeled', 0.5, NULL, 'judge-1')$$,
                 '22023', NULL, 'a score below 1 is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 5), 'error', 3, NULL, 'judge-1')$$,
                 '22023', NULL, 'a score on an error is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 8), 'labeled', 3, NULL, ' ')$$,
                 '22023', 'record_judgement: p_judge_model must be a non-empty string',
                 'an empty p_judge_model is 22023, even on an outcome in the wrong state');
SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch(NULL, 1)$$, '22023',
                 'claim_judge_batch: p_worker must be a non-empty string', 'a NULL p_worker is 22023');
SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch('', 1)$$, '22023', NULL, 'an empty p_worker is 22023');
SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch('w', 0)$$, '22023', NULL, 'p_limit 0 is 22023');
SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch('w', NULL)$$, '22023', NULL, 'a NULL p_limit is 22023');
SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch('w', 10001)$$, '22023', NULL, 'p_limit over 10000 is 22023');
SELECT throws_ok($$SELECT * FROM routing._claim_judge_batch('w', 1, NULL)$$, '22023',
                 'claim_judge_batch: p_as_of must not be NULL', 'a NULL p_as_of is 22023');

-- Nothing written when a call raises.
SELECT is((SELECT judge_status FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_req WHERE n = 5)),
          'claimed', 'a refused judgement leaves the outcome as it was');

-- Bounds (v0.2), checked first with 22023, even on an unknown outcome --------------------

SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch(repeat('w', 256), 1)$$, '22023',
                 'claim_judge_batch: p_worker must be at most 255 characters, got 256',
                 'a p_worker over 255 characters is 22023, naming the bound');
SELECT throws_ok($$SELECT * FROM routing.claim_judge_batch('w', 2147483647)$$, '22023', NULL,
                 'the largest p_limit is 22023');
SELECT throws_ok($$SELECT * FROM routing._claim_judge_batch('w', 1, 'infinity')$$, '22023', NULL,
                 'a claim at p_as_of infinity is 22023 (no lease arithmetic on infinity)');
SELECT throws_ok($$SELECT * FROM routing._claim_judge_batch('w', 1, '4713-01-01 00:00:00+00 BC')$$, '22023', NULL,
                 'a claim at p_as_of 4713 BC is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'labeled', 'NaN', NULL, 'judge-1')$$, '22023',
                 'record_judgement: p_score must be a finite number, got NaN', 'a NaN score is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'labeled', 'Infinity', NULL, 'judge-1')$$, '22023', NULL,
                 'an infinite score is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'labeled', '-Infinity', NULL, 'judge-1')$$, '22023', NULL,
                 'a -infinite score is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'LABELED', 3, NULL, 'judge-1')$$, '22023',
                 'record_judgement: unknown p_status ''LABELED''', 'the verdict vocabulary is exact (case matters)');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'labeled', 3, repeat('r', 10001), 'judge-1')$$, '22023',
                 'record_judgement: p_rationale must be at most 10000 characters, got 10001',
                 'a p_rationale over 10000 characters is 22023');
SELECT throws_ok($$SELECT * FROM routing.record_judgement(999999, 'labeled', 3, NULL, repeat('j', 256))$$, '22023',
                 'record_judgement: p_judge_model must be at most 255 characters, got 256',
                 'a p_judge_model over 255 characters is 22023');
SELECT is((SELECT judge_status FROM routing.routing_outcomes WHERE id = (SELECT outcome_id FROM t_req WHERE n = 5)),
          'claimed', 'refused judgements still leave the claimed outcome as it was');
SELECT results_eq(
    $$SELECT judge_status FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 5), 'labeled', 5,
                                                         repeat('r', 10000), repeat('j', 255))$$,
    $$VALUES ('labeled'::text)$$,
    'a rationale of exactly 10000 characters and a judge model of exactly 255 are accepted');
SELECT results_eq(
    $$SELECT length(judge_rationale), length(judge_model) FROM routing.routing_outcomes
       WHERE id = (SELECT outcome_id FROM t_req WHERE n = 5)$$,
    $$VALUES (10000, 255)$$,
    'and recorded whole');
INSERT INTO t_req SELECT 13, d.outcome_id, d.inference_id
  FROM routing.insert_decision('judge-13', 'a0000000-0000-4000-8000-000000000001', 'chat', 100, 20) d;
SELECT count(*) FROM routing.complete_decision((SELECT inference_id FROM t_req WHERE n = 13), '{"a": 13}', 100, 20, 500);
SELECT results_eq(
    $$SELECT judge_status FROM routing.record_judgement((SELECT outcome_id FROM t_req WHERE n = 13), 'cannot_evaluate', NULL, '', 'judge-1')$$,
    $$VALUES ('cannot_evaluate'::text)$$,
    'an empty rationale is still accepted (only its length is bounded)');
SELECT lives_ok($$SELECT * FROM routing.claim_judge_batch(repeat('w', 255), 10000)$$,
                'a p_worker of exactly 255 characters and p_limit 10000 are accepted');
SELECT lives_ok($$SELECT * FROM routing._claim_judge_batch('w', 1, '9999-12-30 00:00:00+00')$$,
                'a claim at the last accepted p_as_of fits the lease arithmetic');

SELECT * FROM finish();
ROLLBACK;
