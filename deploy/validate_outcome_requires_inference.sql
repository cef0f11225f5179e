-- Deploy routing_ledger:validate_outcome_requires_inference to pg
-- requires: outcome_requires_inference
--
-- VALIDATE takes SHARE UPDATE EXCLUSIVE: inserts and updates go on while it scans.
-- If history still violates the constraint, fail first with one readable message
-- (the count and the fix) instead of PostgreSQL's report of the first bad row; the
-- transaction rolls back and nothing changes. Repair, then deploy again.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

DO $$
DECLARE
    v_orphans bigint;
BEGIN
    -- Same predicate as the partial index routing_outcomes_orphans.
    SELECT count(*) INTO v_orphans
      FROM routing.routing_outcomes o
     WHERE o.inference_id IS NULL
       AND o.chosen_model_slug IS NOT NULL
       AND o.decision_rule <> 'failed_pre_dispatch';
    IF v_orphans > 0 THEN
        RAISE EXCEPTION 'cannot validate outcome_requires_inference_when_model_chosen: % outcome(s) name a dispatched model but no inference',
                        v_orphans
            USING ERRCODE = 'check_violation',
                  HINT = 'history from the older write path: dry-run SELECT * FROM routing.repair_orphans(), apply with routing.repair_orphans(p_apply => true), close stuck attempts with routing.reap_stuck_inferences(), decide what nothing matched with routing.close_unmatched_orphans(p_apply => true), then deploy again (docs/runbook.md)';
    END IF;
END
$$;

ALTER TABLE routing.routing_outcomes
    VALIDATE CONSTRAINT outcome_requires_inference_when_model_chosen;

COMMIT;
