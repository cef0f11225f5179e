-- pgTAP for the validate_outcome_requires_inference change: after the full plan, the
-- CHECK added NOT VALID by outcome_requires_inference is validated, i.e. PostgreSQL has
-- proved it for every existing row and treats it as a full constraint.
BEGIN;
SELECT plan(4);

SELECT is(
    (SELECT convalidated FROM pg_catalog.pg_constraint
      WHERE conrelid = 'routing.routing_outcomes'::regclass
        AND conname = 'outcome_requires_inference_when_model_chosen'),
    true,
    'outcome_requires_inference_when_model_chosen is validated (convalidated)'
);
SELECT unalike(
    (SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
      WHERE conrelid = 'routing.routing_outcomes'::regclass
        AND conname = 'outcome_requires_inference_when_model_chosen'),
    '%NOT VALID%',
    'its definition no longer carries NOT VALID'
);
SELECT is_empty(
    $$SELECT id FROM routing.routing_outcomes
       WHERE inference_id IS NULL AND chosen_model_slug IS NOT NULL
         AND decision_rule <> 'failed_pre_dispatch'$$,
    'no orphan outcome exists (what the validation proved)'
);
-- Re-running the validation is harmless (a re-deploy of this change is safe).
SELECT lives_ok(
    $$ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT outcome_requires_inference_when_model_chosen$$,
    'VALIDATE CONSTRAINT on the validated constraint is a no-op'
);

SELECT * FROM finish();
ROLLBACK;
