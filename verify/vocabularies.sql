-- Verify routing_ledger:vocabularies on pg

BEGIN;

DO $$
BEGIN
    ASSERT routing._outcome_statuses() @> ARRAY['succeeded', 'cancelled']
       AND routing._judge_verdicts() = ARRAY['labeled', 'error', 'cannot_evaluate']
       AND routing._judge_statuses() = ARRAY['unlabeled', 'claimed'] || routing._judge_verdicts()
       AND routing._error_codes() = routing._client_error_codes() || 'abandoned'::text
       AND routing._outcome_is_orphan(NULL, 'm', 'cheapest_clearing_floor')
       AND NOT routing._outcome_is_orphan(NULL, 'm', 'failed_pre_dispatch'),
           'the vocabulary functions are missing or wrong';
    ASSERT (SELECT count(*) FROM pg_catalog.pg_constraint c
             WHERE (c.conrelid, c.conname) IN (
                   ('routing.routing_outcomes'::regclass, 'routing_outcomes_judge_status_check'),
                   ('routing.retry_policy'::regclass, 'retry_policy_error_code_check'),
                   ('routing.retry_policy'::regclass, 'retry_policy_give_up_status_check'))
               AND pg_catalog.pg_get_constraintdef(c.oid) ~ 'routing\._(outcome_statuses|judge_statuses|error_codes)\(') = 3,
           'a CHECK does not call its vocabulary function';
END
$$;

ROLLBACK;
