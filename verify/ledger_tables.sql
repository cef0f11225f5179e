-- Verify routing_ledger:ledger_tables on pg

BEGIN;

SELECT id, request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
       min_quality, projected_cost_usd, explanation, inference_id, outcome_status,
       cost_actual_usd, observed_latency_ms, attempts, judge_status, judge_score,
       judge_rationale, judge_model, judge_labeled_at, created_at, completed_at
  FROM routing.routing_outcomes WHERE false;
SELECT id, outcome_id, attempt_no, agent_id, model_slug, status, error_code, error_message,
       http_status, retry_after_ms, not_before, request_payload, response_payload,
       input_tokens, output_tokens, cost_usd, latency_ms, created_at, completed_at
  FROM routing.inferences WHERE false;

DO $$
BEGIN
    ASSERT (SELECT condeferrable AND condeferred FROM pg_catalog.pg_constraint
             WHERE conrelid = 'routing.routing_outcomes'::regclass
               AND conname = 'routing_outcomes_inference_id_fkey'),
           'routing_outcomes.inference_id must reference inferences DEFERRABLE INITIALLY DEFERRED';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger
             WHERE tgname = 'guard_transition'
               AND tgrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)) = 2,
           'the transition guards are missing';
END
$$;

ROLLBACK;
