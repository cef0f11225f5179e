-- Revert routing_ledger:outcome_requires_inference from pg
--
-- Restores exactly what the first deploy found: nothing, or the hand-added
-- constraint with its own definition and validated state (pg_get_constraintdef
-- carries NOT VALID when it was not validated).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

DO $$
DECLARE
    v_prev routing.replaced_constraints;
BEGIN
    SELECT * INTO v_prev FROM routing.replaced_constraints
     WHERE change = 'outcome_requires_inference'
       AND conname = 'outcome_requires_inference_when_model_chosen';

    ALTER TABLE routing.routing_outcomes
        DROP CONSTRAINT IF EXISTS outcome_requires_inference_when_model_chosen;

    IF v_prev.definition IS NOT NULL THEN
        -- A validated definition is re-checked by this ADD, scanning the table under
        -- the ACCESS EXCLUSIVE lock (docs/runbook.md says so); NOT VALID adds no scan.
        EXECUTE format('ALTER TABLE routing.routing_outcomes ADD CONSTRAINT %I %s',
                       v_prev.conname, v_prev.definition);
        IF v_prev.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON CONSTRAINT %I ON routing.routing_outcomes IS %L',
                           v_prev.conname, v_prev.comment);
        END IF;
    END IF;

    DELETE FROM routing.replaced_constraints
     WHERE change = 'outcome_requires_inference'
       AND conname = 'outcome_requires_inference_when_model_chosen';

    IF NOT EXISTS (SELECT FROM routing.replaced_constraints) THEN
        DROP TABLE routing.replaced_constraints;
    END IF;
END
$$;

COMMIT;
