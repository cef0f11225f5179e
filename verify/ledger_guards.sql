-- Verify routing_ledger:ledger_guards on pg

BEGIN;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing._guard_inference_transition()', 'routing._guard_outcome_transition()',
                             'routing._settle_budget_on_outcome()'] LOOP
        ASSERT (SELECT p.proconfig IS NULL AND NOT p.prosecdef FROM pg_catalog.pg_proc p WHERE p.oid = f::regprocedure),
               f || ' must run with no SET clause, as the writer';
    END LOOP;
    ASSERT (SELECT pg_catalog.pg_get_functiondef('routing._guard_outcome_transition()'::regprocedure)
                   LIKE '%current_setting(''routing.restoring_repair_run''%'),
           'routing._guard_outcome_transition must test the setting before the repair check';
END
$$;

ROLLBACK;
