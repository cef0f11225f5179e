-- Verify routing_ledger:outcome_requires_inference on pg

BEGIN;

DO $$
DECLARE
    v_def text;
BEGIN
    SELECT pg_catalog.pg_get_constraintdef(c.oid) INTO v_def
      FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = 'routing.routing_outcomes'::regclass
       AND c.conname = 'outcome_requires_inference_when_model_chosen'
       AND c.contype = 'c';
    ASSERT v_def IS NOT NULL, 'constraint outcome_requires_inference_when_model_chosen is missing';
    ASSERT v_def LIKE '%chosen_model_slug IS NULL%'
       AND v_def LIKE '%''failed_pre_dispatch''%'
       AND v_def LIKE '%inference_id IS NOT NULL%'
       AND v_def NOT LIKE '%outcome_status%',
           'outcome_requires_inference_when_model_chosen has an unexpected definition: ' || v_def;
END
$$;

ROLLBACK;
