-- Verify routing_ledger:budget_ledger on pg

BEGIN;

SELECT agent_id, spend_day, spent_usd FROM routing.budget_spend WHERE false;
SELECT spend_day, drifted, checked_at FROM routing.budget_drift_checks WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'routing._outcome_spend(numeric, numeric, text)',
        'routing._spend_day(timestamptz)',
        'routing._derived_spend(uuid, date)',
        'routing._reserve_budget(uuid, numeric, numeric, timestamptz)',
        'routing._settle_budget(uuid, timestamptz, numeric)',
        'routing._lock_budget_rows(bigint[])',
        'routing._derive_budget_drift(timestamptz)',
        'routing._budget_drift(timestamptz)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT NOT pg_catalog.has_function_privilege('routing_app', to_regprocedure(f), 'EXECUTE'),
               f || ' must be private';
    END LOOP;
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger
             WHERE tgrelid = 'routing.routing_outcomes'::regclass
               AND tgname IN ('settle_budget', 'settle_budget_delete')) = 2,
           'the settlement triggers on routing_outcomes are missing';
    ASSERT pg_catalog.has_function_privilege('routing_ops', 'routing.check_budget_drift(timestamptz)', 'EXECUTE'),
           'routing_ops must be able to execute routing.check_budget_drift';
    ASSERT EXISTS (SELECT FROM routing.integrity_metrics WHERE metric = 'budget_spend_drift'),
           'the integrity metric budget_spend_drift is missing';
END
$$;

ROLLBACK;
