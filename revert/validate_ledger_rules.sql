-- Revert routing_ledger:validate_ledger_rules from pg
--
-- The two CHECKs back to NOT VALID, as ledger_rules left them (a short ACCESS EXCLUSIVE
-- lock, no scan).

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.inferences
    DROP CONSTRAINT inference_rules,
    ADD CONSTRAINT inference_rules
        CHECK (routing._inference_rules_hold(status, completed_at, error_code, error_message, attempt_no,
                                             cost_usd, http_status, input_tokens, latency_ms,
                                             output_tokens, retry_after_ms))
        NOT VALID;
ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT outcome_rules,
    ADD CONSTRAINT outcome_rules
        CHECK (routing._outcome_rules_hold(request_id, task_type, decision_rule, chosen_model_slug,
                                           outcome_status, completed_at, judge_status, judge_claimed_by,
                                           judge_claim_expires_at, judge_score, attempts, cost_actual_usd,
                                           projected_cost_usd, observed_latency_ms))
        NOT VALID;
COMMENT ON CONSTRAINT inference_rules ON routing.inferences IS
    'The row rules of an attempt, tested by routing._inference_rules_hold; a broken rule is reported under its own name.';
COMMENT ON CONSTRAINT outcome_rules ON routing.routing_outcomes IS
    'The row rules of an outcome, tested by routing._outcome_rules_hold; a broken rule is reported under its own name.';

UPDATE routing.ledger_layout_ddl d
   SET validated = false
 WHERE d.kind = 'constraint' AND d.name IN ('inference_rules', 'outcome_rules');

COMMIT;
