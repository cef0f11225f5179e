-- pgTAP for the write path's one-statement transitions (the write_path rework after
-- @v0.2.0): complete_decision and fail_inference move a routed attempt with one UPDATE and
-- read only when it finds none; an error after that UPDATE undoes it; arguments are
-- accepted inline and refused by the routing._require_* checks; a capped agent's repeated
-- decision writes nothing, its budget included.
BEGIN;
SELECT plan(33);

------------------------------------------------------------------------------ helpers

\ir helpers/error_of.sql
\ir helpers/fingerprint.sql

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('t_cheap', 'p1', 'cheap-1', 1, 2, 0.80, true),
       ('t_mid',   'p2', 'mid-1',   2, 3, 0.80, true);
INSERT INTO routing.agents (id, tenant_id, name, daily_cap_usd)
VALUES ('00000000-0000-4000-8000-00000000f001', '00000000-0000-4000-8000-00000000f000', 'plain', NULL),
       ('00000000-0000-4000-8000-00000000f002', '00000000-0000-4000-8000-00000000f000', 'capped', 100);
\set agent '''00000000-0000-4000-8000-00000000f001'''
\set capped '''00000000-0000-4000-8000-00000000f002'''

------------------------------------------------- complete_decision: the usual call and its repeat

SELECT outcome_id AS c_o, inference_id AS c_i
  FROM routing.insert_decision('tr-complete', :agent, 'general', 1000, 500) \gset
SELECT results_eq(format($$SELECT outcome_id, outcome_status, cost_actual_usd FROM routing.complete_decision(%s, '{"text": "ok"}', 1000, 200, 40)$$, :c_i),
    format($$VALUES (%s::bigint, 'succeeded'::text, 0.001400::numeric)$$, :c_o),
    'complete_decision returns the outcome, succeeded, and the cost at catalog prices (1000 in x 1 + 200 out x 2 per Mtok)');
SELECT results_eq(format($$SELECT status, input_tokens, output_tokens, cost_usd, latency_ms, usage_source, completed_at IS NOT NULL FROM routing.inferences WHERE id = %s$$, :c_i),
    $$VALUES ('succeeded'::text, 1000, 200, 0.001400::numeric, 40, 'provider'::text, true)$$,
    '... the attempt carries the counts, the cost computed in its UPDATE, the latency and the usage source');
SELECT results_eq(format($$SELECT outcome_status, inference_id, cost_actual_usd, observed_latency_ms, judge_status FROM routing.routing_outcomes WHERE id = %s$$, :c_o),
    format($$VALUES ('succeeded'::text, %s::bigint, 0.001400::numeric, 40, 'unlabeled'::text)$$, :c_i),
    '... and the outcome is succeeded, linked to it, with the same cost, judgeable');
SELECT is((SELECT completed_at FROM routing.inferences WHERE id = :c_i),
          (SELECT completed_at FROM routing.routing_outcomes WHERE id = :c_o),
    '... both stamped with the same instant');
SELECT pg_temp.fingerprint() AS fp_c \gset
SELECT results_eq(format($$SELECT outcome_id, outcome_status, cost_actual_usd FROM routing.complete_decision(%s, '{}', 1, 1, 1, 'estimated')$$, :c_i),
    format($$VALUES (%s::bigint, 'succeeded'::text, 0.001400::numeric)$$, :c_o),
    'a repeat (other counts) returns what the first call wrote');
SELECT is(pg_temp.fingerprint(), :'fp_c', '... and writes nothing');

---------------------------------------------- a terminal outcome whose attempt was left routed

-- History (the older write path): the outcome ended while its attempt stayed routed.
SELECT outcome_id AS h_o, inference_id AS h_i
  FROM routing.insert_decision('tr-history', :agent, 'general', 1000, 500) \gset
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes DISABLE TRIGGER guard_transition;
UPDATE routing.routing_outcomes SET outcome_status = 'failed_provider', completed_at = now() WHERE id = :h_o;
ALTER TABLE routing.routing_outcomes ENABLE TRIGGER guard_transition;
SET CONSTRAINTS ALL DEFERRED;
SELECT pg_temp.fingerprint() AS fp_h \gset
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, 1, 1)$$, :h_i)),
    format('55000: complete_decision: outcome %s of inference %s is already failed_provider', :h_o, :h_i),
    'complete_decision on an attempt whose outcome is already terminal: 55000 naming the status');
SELECT is(pg_temp.fingerprint(), :'fp_h', '... and the attempt''s UPDATE was undone: still routed, nothing written');
SELECT is((SELECT status FROM routing.inferences WHERE id = :h_i), 'routed', '... the attempt is still routed');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', '503')$$, :h_i)),
    '55000: fail_inference: outcome % is already failed_provider', 'fail_inference on it: 55000 as well');
SELECT is(pg_temp.fingerprint(), :'fp_h', '... nothing written (no new attempt)');

-- An outcome ended, between fail_inference's read of it and its own UPDATE, by a write
-- that did not go through the attempt (here a trigger on the new attempt's INSERT, standing
-- in for an owner's direct write): the re-link refuses with 55000 and nothing is written.
SELECT outcome_id AS e_o, inference_id AS e_i
  FROM routing.insert_decision('tr-ended', :agent, 'general', 1000, 500) \gset
CREATE FUNCTION pg_temp.end_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE routing.routing_outcomes SET outcome_status = 'failed_provider', completed_at = now()
     WHERE id = NEW.outcome_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER end_outcome AFTER INSERT ON routing.inferences
    FOR EACH ROW WHEN (NEW.attempt_no > 1) EXECUTE FUNCTION pg_temp.end_outcome();
SELECT pg_temp.fingerprint() AS fp_e \gset
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'server_error', '503')$$, :e_i)),
    format('55000: fail_inference: outcome %s of inference %s is already failed_provider', :e_o, :e_i),
    'an outcome ended while its attempt was being failed: the re-link refuses, 55000');
SELECT is(pg_temp.fingerprint(), :'fp_e', '... and nothing was written (no second attempt, the first still routed)');
DROP TRIGGER end_outcome ON routing.inferences;

------------------------------------------------ fail_inference: the states it reads after its UPDATE

SELECT outcome_id AS f_o, inference_id AS f_i
  FROM routing.insert_decision('tr-fail', :agent, 'general', 1000, 500) \gset
SELECT results_eq(format($$SELECT action, outcome_id FROM routing.fail_inference(%s, 'server_error', '503', 503)$$, :f_i),
    format($$VALUES ('failover'::text, %s::bigint)$$, :f_o), 'a 5xx fails over');
SELECT results_eq(format($$SELECT status, error_code, http_status, output_tokens, usage_source, cost_usd FROM routing.inferences WHERE id = %s$$, :f_i),
    $$VALUES ('failed'::text, 'server_error'::text, 503, NULL::int, NULL::text, NULL::numeric)$$,
    '... the failed attempt: no output known, so no usage source and no cost (never 0)');
SELECT pg_temp.fingerprint() AS fp_f \gset
SELECT results_eq(format($$SELECT action, outcome_id FROM routing.fail_inference(%s, 'server_error', 'again')$$, :f_i),
    format($$VALUES ('failover'::text, %s::bigint)$$, :f_o), 'a repeat with the same code returns the same decision');
SELECT is(pg_temp.fingerprint(), :'fp_f', '... and writes nothing');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'other')$$, :f_i)),
    '55000: fail_inference: inference % already failed with server_error, not timeout',
    'another code on the failed attempt: 55000');
SELECT inference_id AS f_i2 FROM routing.routing_outcomes WHERE id = :f_o \gset
-- A partial answer: the heartbeat's count makes the cost of the failed attempt.
SELECT routing.heartbeat_inference(:f_i2, 100);
SELECT results_eq(format($$SELECT action, outcome_status FROM routing.fail_inference(%s, 'bad_request', '400', 400)$$, :f_i2),
    $$VALUES ('give_up'::text, 'failed_bad_request'::text)$$, 'a 400 gives up');
SELECT results_eq(format($$SELECT output_tokens, usage_source, cost_usd FROM routing.inferences WHERE id = %s$$, :f_i2),
    $$VALUES (100, 'estimated'::text, round(1000 * 2 / 1e6 + 100 * 3 / 1e6, 6))$$,
    '... the attempt keeps the heartbeat''s 100 tokens, estimated, and its cost on t_mid''s prices');
SELECT is((SELECT cost_actual_usd FROM routing.routing_outcomes WHERE id = :f_o), round(1000 * 2 / 1e6 + 100 * 3 / 1e6, 6),
    '... and the outcome carries that cost');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.complete_decision(%s, '{}', 1, 1, 1)$$, :f_i2)),
    '55000: complete_decision: inference % is already failed (bad_request)%', 'completing the failed attempt: 55000');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'x')$$, :c_i)),
    '55000: fail_inference: inference % already succeeded%', 'failing a succeeded attempt: 55000');
SELECT alike(pg_temp.error_of($$SELECT * FROM routing.fail_inference(987654321, 'timeout', 'x')$$),
    'P0002: %987654321%', 'an unknown attempt: P0002');

------------------------------------------------------------ the inline argument test and the checks

SELECT pg_temp.fingerprint() AS fp_args \gset
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision(%L, %L, 'general', 1, 1)$$, E' \t\r\n', :agent)),
    '22023: %p_request_id%', 'a request id of only blanks: 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('tr-x', %L, %L, 1, 1)$$, :agent, repeat('t', 65))),
    '22023: %p_task_type%', 'a 65-character task type: 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.insert_decision('tr-x', %L, 'general', 1, 1, '{}', NULL)$$, :agent)),
    '22023: %p_streamed%', 'a NULL p_streamed: 22023 naming it');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', %L)$$, :c_i, E'\t\n')),
    '22023: %p_error_message%', 'an error message of only blanks: 22023, before the state (55000)');
SELECT alike(pg_temp.error_of(format($$SELECT * FROM routing.fail_inference(%s, 'timeout', 'x', 600)$$, :c_i)),
    '22023: %p_http_status%', 'p_http_status 600: 22023');
SELECT is(pg_temp.fingerprint(), :'fp_args', 'none of the refused calls wrote anything');

------------------------------------------------ insert_decision: a capped agent's repeat

SELECT outcome_id AS b_o, inference_id AS b_i, model_slug AS b_m
  FROM routing.insert_decision('tr-budget', :capped, 'general', 1000, 500) \gset
SELECT pg_temp.fingerprint() AS fp_b \gset
SELECT (SELECT spent_usd FROM routing.budget_spend WHERE agent_id = :capped) AS b_spent \gset
SELECT results_eq(format($$SELECT outcome_id, inference_id, model_slug, outcome_status FROM routing.insert_decision('tr-budget', %L, 'general', 9999, 9999)$$, :capped),
    format($$VALUES (%s::bigint, %s::bigint, %L::text, NULL::text)$$, :b_o, :b_i, :'b_m'),
    'a capped agent''s repeat (other arguments) returns the decision taken');
SELECT is((SELECT spent_usd FROM routing.budget_spend WHERE agent_id = :capped), :'b_spent'::numeric,
    '... the day''s spend is unchanged (reserved once)');
SELECT is(pg_temp.fingerprint(), :'fp_b', '... and it wrote nothing');

SELECT * FROM finish();
ROLLBACK;
