-- Verify routing_ledger:outcome_request_keys on pg

BEGIN;

SELECT agent_id, request_id, outcome_id, outcome_created_at FROM routing.outcome_request_keys WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing._claim_request_key()', 'routing._follow_outcome_created_at()'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT NOT has_function_privilege('public', f, 'EXECUTE'), f || ' must not be executable by PUBLIC';
    END LOOP;
END
$$;

ROLLBACK;
