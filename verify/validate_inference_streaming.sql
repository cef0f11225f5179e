-- Verify routing_ledger:validate_inference_streaming on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT bool_and(c.convalidated) AND count(*) = 6
              FROM pg_catalog.pg_constraint c
             WHERE (c.conrelid, c.conname) IN (
                   ('routing.inferences'::regclass, 'inferences_error_code_check'),
                   ('routing.inferences'::regclass, 'inference_usage_source_known'),
                   ('routing.inferences'::regclass, 'inference_ttft_non_negative'),
                   ('routing.routing_outcomes'::regclass, 'routing_outcomes_outcome_status_check'),
                   ('routing.retry_policy'::regclass, 'retry_policy_error_code_check'),
                   ('routing.retry_policy'::regclass, 'retry_policy_give_up_status_check'))),
           'the checks of inference_streaming are not all validated';
END
$$;

ROLLBACK;
