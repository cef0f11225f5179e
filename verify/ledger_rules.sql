-- Verify routing_ledger:ledger_rules on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_constraint c
             WHERE (c.conrelid = 'routing.inferences'::regclass AND c.conname = 'inference_rules')
                OR (c.conrelid = 'routing.routing_outcomes'::regclass AND c.conname = 'outcome_rules')) = 2,
           'the CHECKs inference_rules and outcome_rules are missing';
    ASSERT routing._inference_rules_hold('routed', NULL, NULL, NULL, 1, NULL, NULL, 10, NULL, NULL, NULL)
       AND routing._outcome_rules_hold('r', 'general', 'cheapest_clearing_floor', 'm', NULL, NULL, NULL, NULL,
                                       NULL, NULL, 1, NULL, 0.1, NULL),
           'the ledger rules refuse a routed attempt or an outcome in flight';
END
$$;

ROLLBACK;
