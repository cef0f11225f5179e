-- Deploy routing_ledger:outcome_requires_inference to pg
-- requires: ledger_tables
--
-- The invariant the old two-phase write path could not keep: a dispatched outcome
-- names its attempt. Because insert_decision writes both in one transaction, the
-- CHECK needs no in-flight escape (the old one carried `outcome_status IS NULL`).
--
-- Added NOT VALID: it holds for every row written from now on, without a scan under
-- an ACCESS EXCLUSIVE lock. History from an older write path may violate it until
-- routing.repair_orphans has re-linked it; a later change validates it.
--
-- A constraint of the same name may already exist (added by hand on production, with
-- an older predicate). Its definition and validated state are recorded before it is
-- dropped, so that revert puts back exactly what was there, or nothing.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.replaced_constraints (
    change      text NOT NULL,
    table_name  text NOT NULL,
    conname     name NOT NULL,
    -- pg_get_constraintdef() of what was there before the first deploy; NULL: nothing.
    definition  text,
    validated   boolean,
    comment     text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (change, conname)
);
COMMENT ON TABLE routing.replaced_constraints IS
    'Constraint definitions a deploy replaced (or their absence), with validated state and comment, so its revert restores exactly what existed before.';
REVOKE ALL ON routing.replaced_constraints FROM PUBLIC;
GRANT SELECT ON routing.replaced_constraints TO routing_readonly;

-- Only the first deploy records: a re-run must not mistake our own constraint for
-- the one it replaced.
INSERT INTO routing.replaced_constraints (change, table_name, conname, definition, validated, comment)
SELECT 'outcome_requires_inference', 'routing.routing_outcomes',
       'outcome_requires_inference_when_model_chosen',
       pg_catalog.pg_get_constraintdef(c.oid), c.convalidated,
       pg_catalog.obj_description(c.oid, 'pg_constraint')
  FROM (SELECT) AS one
  LEFT JOIN pg_catalog.pg_constraint c
         ON c.conrelid = 'routing.routing_outcomes'::regclass
        AND c.conname = 'outcome_requires_inference_when_model_chosen'
ON CONFLICT (change, conname) DO NOTHING;

-- One statement, one short ACCESS EXCLUSIVE lock, no scan.
ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT IF EXISTS outcome_requires_inference_when_model_chosen,
    ADD CONSTRAINT outcome_requires_inference_when_model_chosen
        CHECK (chosen_model_slug IS NULL
               OR decision_rule = 'failed_pre_dispatch'
               OR inference_id IS NOT NULL)
        NOT VALID;

COMMENT ON CONSTRAINT outcome_requires_inference_when_model_chosen ON routing.routing_outcomes IS
    'A dispatched outcome names its attempt. No in-flight escape: insert_decision writes outcome and first inference atomically.';

COMMIT;
