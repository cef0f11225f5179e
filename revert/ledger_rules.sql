-- Revert routing_ledger:ledger_rules from pg
--
-- The rules' own CHECKs back, as the released changes defined them (validated: each is a
-- scan of its table under the ALTER's lock), the two CHECKs and their functions dropped;
-- on a partitioned ledger, ledger_layout_ddl records the rules' CHECKs again.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_rules,
    ADD CONSTRAINT inference_error_only_when_failed
        CHECK (status = 'failed' OR (error_code IS NULL AND error_message IS NULL)),
    ADD CONSTRAINT inference_failed_has_error
        CHECK (status <> 'failed' OR (error_code IS NOT NULL AND error_message IS NOT NULL)),
    ADD CONSTRAINT inference_routed_iff_open CHECK ((status = 'routed') = (completed_at IS NULL)),
    ADD CONSTRAINT inferences_attempt_no_check CHECK (attempt_no >= 1),
    ADD CONSTRAINT inferences_cost_usd_check CHECK (cost_usd >= 0),
    ADD CONSTRAINT inferences_http_status_check CHECK (http_status >= 100 AND http_status <= 599),
    ADD CONSTRAINT inferences_input_tokens_check CHECK (input_tokens >= 0),
    ADD CONSTRAINT inferences_latency_ms_check CHECK (latency_ms >= 0),
    ADD CONSTRAINT inferences_output_tokens_check CHECK (output_tokens >= 0),
    ADD CONSTRAINT inferences_retry_after_ms_check CHECK (retry_after_ms >= 0),
    ADD CONSTRAINT inferences_status_check CHECK (status = ANY (ARRAY['routed', 'succeeded', 'failed']));

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT outcome_rules,
    ADD CONSTRAINT outcome_claim_has_worker
        CHECK ((judge_status = 'claimed') = (judge_claimed_by IS NOT NULL AND judge_claim_expires_at IS NOT NULL)),
    ADD CONSTRAINT outcome_in_flight_is_dispatched
        CHECK (outcome_status IS NOT NULL
               OR (chosen_model_slug IS NOT NULL
                   AND decision_rule = ANY (ARRAY['cheapest_clearing_floor', 'm_allowed_veto_applied']))),
    ADD CONSTRAINT outcome_rejected_has_no_model
        CHECK (outcome_status IS DISTINCT FROM 'rejected' OR chosen_model_slug IS NULL),
    ADD CONSTRAINT outcome_rejected_iff_no_candidate
        CHECK ((decision_rule = ANY (ARRAY['no_candidate_clears_floor', 'no_candidate_enrolled']))
               = (NOT (outcome_status IS DISTINCT FROM 'rejected'))),
    ADD CONSTRAINT outcome_terminal_iff_completed CHECK ((outcome_status IS NULL) = (completed_at IS NULL)),
    ADD CONSTRAINT routing_outcomes_attempts_check CHECK (attempts >= 0),
    ADD CONSTRAINT routing_outcomes_cost_actual_usd_check CHECK (cost_actual_usd >= 0),
    ADD CONSTRAINT routing_outcomes_decision_rule_check
        CHECK (decision_rule = ANY (ARRAY['cheapest_clearing_floor', 'm_allowed_veto_applied',
                                          'no_candidate_clears_floor', 'no_candidate_enrolled',
                                          'failed_pre_dispatch'])),
    ADD CONSTRAINT routing_outcomes_judge_score_check CHECK (judge_score >= 1 AND judge_score <= 5),
    ADD CONSTRAINT routing_outcomes_observed_latency_ms_check CHECK (observed_latency_ms >= 0),
    ADD CONSTRAINT routing_outcomes_projected_cost_usd_check CHECK (projected_cost_usd >= 0),
    ADD CONSTRAINT routing_outcomes_request_id_check CHECK (request_id <> ''),
    ADD CONSTRAINT routing_outcomes_task_type_check CHECK (task_type <> '');

WITH gone AS (
    DELETE FROM routing.ledger_layout_ddl d
     WHERE d.kind = 'constraint' AND d.name IN ('inference_rules', 'outcome_rules')
    RETURNING d.table_name
)
INSERT INTO routing.ledger_layout_ddl (ordinal, table_name, kind, name, definition, validated)
SELECT (SELECT coalesce(max(x.ordinal), 0) FROM routing.ledger_layout_ddl x)
       + row_number() OVER (ORDER BY c.conrelid, c.conname),
       c.conrelid::regclass::text, 'constraint', c.conname, pg_catalog.pg_get_constraintdef(c.oid), true
  FROM pg_catalog.pg_constraint c
 WHERE c.conrelid IN ('routing.inferences'::regclass, 'routing.routing_outcomes'::regclass)
   AND c.conname IN ('inference_error_only_when_failed', 'inference_failed_has_error',
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
   AND EXISTS (SELECT FROM gone);

DROP FUNCTION routing._inference_rules_hold(text, timestamptz, text, text, int, numeric, int, int, int, int, int);
DROP FUNCTION routing._outcome_rules_hold(text, text, text, text, text, timestamptz, text, text, timestamptz, numeric, int, numeric, numeric, int);

COMMIT;
