-- Verify routing_ledger:validate_vocabularies on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT bool_and(c.convalidated) AND count(*) = 5
              FROM pg_catalog.pg_constraint c
             WHERE (c.conrelid, c.conname) IN (
                   ('routing.routing_outcomes'::regclass, 'routing_outcomes_outcome_status_check'),
                   ('routing.routing_outcomes'::regclass, 'routing_outcomes_judge_status_check'),
                   ('routing.inferences'::regclass, 'inferences_error_code_check'),
                   ('routing.retry_policy'::regclass, 'retry_policy_error_code_check'),
                   ('routing.retry_policy'::regclass, 'retry_policy_give_up_status_check'))),
           'the checks of vocabularies are not all validated';
END
$$;

ROLLBACK;
