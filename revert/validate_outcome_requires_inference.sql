-- Revert routing_ledger:validate_outcome_requires_inference from pg
--
-- PostgreSQL cannot un-validate a constraint: drop it and add it back NOT VALID in
-- one statement (a short ACCESS EXCLUSIVE lock, no scan).

BEGIN;

SET LOCAL lock_timeout = '5s';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT outcome_requires_inference_when_model_chosen,
    ADD CONSTRAINT outcome_requires_inference_when_model_chosen
        CHECK (chosen_model_slug IS NULL
               OR decision_rule = 'failed_pre_dispatch'
               OR inference_id IS NOT NULL)
        NOT VALID;

COMMENT ON CONSTRAINT outcome_requires_inference_when_model_chosen ON routing.routing_outcomes IS
    'A dispatched outcome names its attempt. No in-flight escape: insert_decision writes outcome and first inference atomically.';

COMMIT;
