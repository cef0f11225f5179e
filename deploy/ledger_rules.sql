-- Deploy routing_ledger:ledger_rules to pg
-- requires: ledger_tables
-- requires: partitioned_ledger
-- requires: validate_vocabularies
-- requires: validate_usage_classes
--
-- The row rules of the two ledger tables, each tested once per write in one expression.
--
-- Why: PostgreSQL prepares a table's CHECK expressions afresh for every INSERT and UPDATE
-- statement (from their stored text: read, planned, compiled), whatever the statement
-- changes. The ledger tables had 15 and 18 CHECKs, and a lifecycle writes them four
-- times: preparing them was a fifth of a write-path backend's CPU (perf, v0.2.1 and
-- v0.3.0 alike). A CHECK that calls one PL/pgSQL function is one small expression to
-- prepare, and the function's body is compiled once per session.
--
-- What holds, exactly as before: each rule below is the released CHECK's expression word
-- for word, NULL passing as in a CHECK. A row that breaks one is refused with SQLSTATE
-- 23514 (check_violation), the message and the error's constraint field naming that
-- rule by its old CHECK's name, so a client or a runbook that keys on the name still
-- reads it. The CHECKs that Sqitch verify scripts, the repair and the integrity report
-- name (nine) stay as they were.
--
-- - routing._inference_rules_hold(...): 11 rules of routing.inferences; the CHECK
--   inference_rules calls it.
-- - routing._outcome_rules_hold(...): 13 rules of routing.routing_outcomes; the CHECK
--   outcome_rules calls it.
--
-- Migration: the two CHECKs are added NOT VALID and the rules' CHECKs dropped, under a
-- 5 s lock_timeout (short ACCESS EXCLUSIVE locks, no scan); validate_ledger_rules then
-- validates them under SHARE UPDATE EXCLUSIVE. Writes are checked throughout: a NOT VALID
-- CHECK holds for every new row. On a ledger already partitioned, ledger_layout_ddl (what
-- unpartition_ledger rebuilds) records the two CHECKs in place of the rules' CHECKs.
-- Revert: the rules' CHECKs back as they were.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing._inference_rules_hold(
    p_status         text,
    p_completed_at   timestamptz,
    p_error_code     text,
    p_error_message  text,
    p_attempt_no     int,
    p_cost_usd       numeric,
    p_http_status    int,
    p_input_tokens   int,
    p_latency_ms     int,
    p_output_tokens  int,
    p_retry_after_ms int
) RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    v_broken int;
    v_rule   text;
BEGIN
    -- Every rule's result in one array, in the order of the names below; the first false
    -- one is broken (NULL passes, as in a CHECK).
    v_broken := pg_catalog.array_position(ARRAY[
        (p_status = 'failed' OR (p_error_code IS NULL AND p_error_message IS NULL)),
        (p_status <> 'failed' OR (p_error_code IS NOT NULL AND p_error_message IS NOT NULL)),
        ((p_status = 'routed') = (p_completed_at IS NULL)),
        (p_attempt_no >= 1),
        (p_cost_usd >= 0),
        (p_http_status >= 100 AND p_http_status <= 599),
        (p_input_tokens >= 0),
        (p_latency_ms >= 0),
        (p_output_tokens >= 0),
        (p_retry_after_ms >= 0),
        (p_status = ANY (ARRAY['routed', 'succeeded', 'failed']))
    ], false);
    IF v_broken IS NULL THEN
        RETURN true;
    END IF;
    -- Refused as PostgreSQL refuses a row that breaks a CHECK, under the rule's name.
    v_rule := (ARRAY[
        'inference_error_only_when_failed',
        'inference_failed_has_error',
        'inference_routed_iff_open',
        'inferences_attempt_no_check',
        'inferences_cost_usd_check',
        'inferences_http_status_check',
        'inferences_input_tokens_check',
        'inferences_latency_ms_check',
        'inferences_output_tokens_check',
        'inferences_retry_after_ms_check',
        'inferences_status_check'
    ])[v_broken];
    RAISE EXCEPTION 'new row for relation "inferences" violates check constraint "%"', v_rule
        USING ERRCODE = 'check_violation', SCHEMA = 'routing', TABLE = 'inferences', CONSTRAINT = v_rule;
END
$$;

CREATE OR REPLACE FUNCTION routing._outcome_rules_hold(
    p_request_id             text,
    p_task_type              text,
    p_decision_rule          text,
    p_chosen_model_slug      text,
    p_outcome_status         text,
    p_completed_at           timestamptz,
    p_judge_status           text,
    p_judge_claimed_by       text,
    p_judge_claim_expires_at timestamptz,
    p_judge_score            numeric,
    p_attempts               int,
    p_cost_actual_usd        numeric,
    p_projected_cost_usd     numeric,
    p_observed_latency_ms    int
) RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    v_broken int;
    v_rule   text;
BEGIN
    -- As _inference_rules_hold: the first false rule is broken, NULL passes.
    v_broken := pg_catalog.array_position(ARRAY[
        ((p_judge_status = 'claimed') = (p_judge_claimed_by IS NOT NULL AND p_judge_claim_expires_at IS NOT NULL)),
        (p_outcome_status IS NOT NULL
         OR (p_chosen_model_slug IS NOT NULL
             AND p_decision_rule = ANY (ARRAY['cheapest_clearing_floor', 'm_allowed_veto_applied']))),
        (p_outcome_status IS DISTINCT FROM 'rejected' OR p_chosen_model_slug IS NULL),
        ((p_decision_rule = ANY (ARRAY['no_candidate_clears_floor', 'no_candidate_enrolled']))
         = (NOT (p_outcome_status IS DISTINCT FROM 'rejected'))),
        ((p_outcome_status IS NULL) = (p_completed_at IS NULL)),
        (p_attempts >= 0),
        (p_cost_actual_usd >= 0),
        (p_decision_rule = ANY (ARRAY['cheapest_clearing_floor', 'm_allowed_veto_applied',
                                      'no_candidate_clears_floor', 'no_candidate_enrolled',
                                      'failed_pre_dispatch'])),
        (p_judge_score >= 1 AND p_judge_score <= 5),
        (p_observed_latency_ms >= 0),
        (p_projected_cost_usd >= 0),
        (p_request_id <> ''),
        (p_task_type <> '')
    ], false);
    IF v_broken IS NULL THEN
        RETURN true;
    END IF;
    -- Refused as PostgreSQL refuses a row that breaks a CHECK, under the rule's name.
    v_rule := (ARRAY[
        'outcome_claim_has_worker',
        'outcome_in_flight_is_dispatched',
        'outcome_rejected_has_no_model',
        'outcome_rejected_iff_no_candidate',
        'outcome_terminal_iff_completed',
        'routing_outcomes_attempts_check',
        'routing_outcomes_cost_actual_usd_check',
        'routing_outcomes_decision_rule_check',
        'routing_outcomes_judge_score_check',
        'routing_outcomes_observed_latency_ms_check',
        'routing_outcomes_projected_cost_usd_check',
        'routing_outcomes_request_id_check',
        'routing_outcomes_task_type_check'
    ])[v_broken];
    RAISE EXCEPTION 'new row for relation "routing_outcomes" violates check constraint "%"', v_rule
        USING ERRCODE = 'check_violation', SCHEMA = 'routing', TABLE = 'routing_outcomes', CONSTRAINT = v_rule;
END
$$;

COMMENT ON FUNCTION routing._inference_rules_hold(text, timestamptz, text, text, int, numeric, int, int, int, int, int) IS
    'The CHECK inference_rules: 11 row rules of routing.inferences (the released CHECKs'' expressions), tested in one expression; true, or 23514 naming the first rule broken. NULL passes.';
COMMENT ON FUNCTION routing._outcome_rules_hold(text, text, text, text, text, timestamptz, text, text, timestamptz, numeric, int, numeric, numeric, int) IS
    'The CHECK outcome_rules: 13 row rules of routing.routing_outcomes (the released CHECKs'' expressions), tested in one expression; true, or 23514 naming the first rule broken. NULL passes.';

ALTER TABLE routing.inferences
    ADD CONSTRAINT inference_rules
        CHECK (routing._inference_rules_hold(status, completed_at, error_code, error_message, attempt_no,
                                             cost_usd, http_status, input_tokens, latency_ms,
                                             output_tokens, retry_after_ms))
        NOT VALID,
    DROP CONSTRAINT inference_error_only_when_failed,
    DROP CONSTRAINT inference_failed_has_error,
    DROP CONSTRAINT inference_routed_iff_open,
    DROP CONSTRAINT inferences_attempt_no_check,
    DROP CONSTRAINT inferences_cost_usd_check,
    DROP CONSTRAINT inferences_http_status_check,
    DROP CONSTRAINT inferences_input_tokens_check,
    DROP CONSTRAINT inferences_latency_ms_check,
    DROP CONSTRAINT inferences_output_tokens_check,
    DROP CONSTRAINT inferences_retry_after_ms_check,
    DROP CONSTRAINT inferences_status_check;

ALTER TABLE routing.routing_outcomes
    ADD CONSTRAINT outcome_rules
        CHECK (routing._outcome_rules_hold(request_id, task_type, decision_rule, chosen_model_slug,
                                           outcome_status, completed_at, judge_status, judge_claimed_by,
                                           judge_claim_expires_at, judge_score, attempts, cost_actual_usd,
                                           projected_cost_usd, observed_latency_ms))
        NOT VALID,
    DROP CONSTRAINT outcome_claim_has_worker,
    DROP CONSTRAINT outcome_in_flight_is_dispatched,
    DROP CONSTRAINT outcome_rejected_has_no_model,
    DROP CONSTRAINT outcome_rejected_iff_no_candidate,
    DROP CONSTRAINT outcome_terminal_iff_completed,
    DROP CONSTRAINT routing_outcomes_attempts_check,
    DROP CONSTRAINT routing_outcomes_cost_actual_usd_check,
    DROP CONSTRAINT routing_outcomes_decision_rule_check,
    DROP CONSTRAINT routing_outcomes_judge_score_check,
    DROP CONSTRAINT routing_outcomes_observed_latency_ms_check,
    DROP CONSTRAINT routing_outcomes_projected_cost_usd_check,
    DROP CONSTRAINT routing_outcomes_request_id_check,
    DROP CONSTRAINT routing_outcomes_task_type_check;

COMMENT ON CONSTRAINT inference_rules ON routing.inferences IS
    'The row rules of an attempt, tested by routing._inference_rules_hold; a broken rule is reported under its own name.';
COMMENT ON CONSTRAINT outcome_rules ON routing.routing_outcomes IS
    'The row rules of an outcome, tested by routing._outcome_rules_hold; a broken rule is reported under its own name.';

-- A ledger already partitioned: unpartition_ledger rebuilds the two CHECKs, not the
-- rules' CHECKs (validated = false until validate_ledger_rules).
WITH gone AS (
    DELETE FROM routing.ledger_layout_ddl d
     WHERE d.kind = 'constraint'
       AND d.name IN ('inference_error_only_when_failed', 'inference_failed_has_error',
                      'inference_routed_iff_open', 'inferences_attempt_no_check',
                      'inferences_cost_usd_check', 'inferences_http_status_check',
                      'inferences_input_tokens_check', 'inferences_latency_ms_check',
                      'inferences_output_tokens_check', 'inferences_retry_after_ms_check',
                      'inferences_status_check', 'outcome_claim_has_worker',
                      'outcome_in_flight_is_dispatched', 'outcome_rejected_has_no_model',
                      'outcome_rejected_iff_no_candidate', 'outcome_terminal_iff_completed',
                      'routing_outcomes_attempts_check', 'routing_outcomes_cost_actual_usd_check',
                      'routing_outcomes_decision_rule_check', 'routing_outcomes_judge_score_check',
                      'routing_outcomes_observed_latency_ms_check',
                      'routing_outcomes_projected_cost_usd_check',
                      'routing_outcomes_request_id_check', 'routing_outcomes_task_type_check')
    RETURNING d.ordinal, d.table_name
)
INSERT INTO routing.ledger_layout_ddl (ordinal, table_name, kind, name, definition, validated)
SELECT min(g.ordinal), g.table_name, 'constraint', c.conname,
       pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', ''), false
  FROM gone g
  JOIN pg_catalog.pg_constraint c
    ON c.conrelid = pg_catalog.to_regclass(g.table_name) AND c.conname IN ('inference_rules', 'outcome_rules')
 GROUP BY g.table_name, c.conname, c.oid;

REVOKE ALL ON FUNCTION routing._inference_rules_hold(text, timestamptz, text, text, int, numeric, int, int, int, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._outcome_rules_hold(text, text, text, text, text, timestamptz, text, text, timestamptz, numeric, int, numeric, numeric, int) FROM PUBLIC;
-- As the vocabularies and routing._usage_classes_fit: pure predicates in a CHECK,
-- callable by the roles that read the ledger.
GRANT EXECUTE ON FUNCTION routing._inference_rules_hold(text, timestamptz, text, text, int, numeric, int, int, int, int, int),
                          routing._outcome_rules_hold(text, text, text, text, text, timestamptz, text, text, timestamptz, numeric, int, numeric, numeric, int)
    TO routing_judge, routing_readonly;

COMMIT;
