-- Deploy routing_ledger:quality_gate to pg
-- requires: learned_quality
--
-- The settings of the floor cleared with confidence and of re-measuring (issue 20; the
-- rule is router's):
-- - routing.settings.quality_gate_z, how many of its standard deviations a learned model's
--   estimate must clear the floor by, in proportion to the share of the estimate its prior
--   still carries. 0 is v0.3.0's rule (the estimate alone).
-- - routing.settings.quality_explore_weight, the label weight up to which a learned model
--   below the floor is re-measured: it is drawn for (on the quality_explore_share of
--   requests, by its Thompson figure) only while its label weight for the task is below
--   it. Re-measuring then costs a set amount of evidence per half-life, not a set share
--   of the traffic. 1000000 (the most) is v0.3.0's rule in practice (no weight reaches it).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- Constant defaults: no table rewrite, and the settings row is one row.
ALTER TABLE routing.settings
    ADD COLUMN IF NOT EXISTS quality_gate_z numeric NOT NULL DEFAULT 0.5
        CONSTRAINT settings_quality_gate_z_check CHECK (quality_gate_z >= 0 AND quality_gate_z <= 10),
    ADD COLUMN IF NOT EXISTS quality_explore_weight numeric NOT NULL DEFAULT 10
        CONSTRAINT settings_quality_explore_weight_check
        CHECK (quality_explore_weight >= 0 AND quality_explore_weight <= 1000000);
COMMENT ON COLUMN routing.settings.quality_gate_z IS
    'z: a model with label weight w is admitted by its estimate only when estimate - z * sd * k / (k + w) clears the floor (k = quality_prior_weight); otherwise only by its capped draw. 0: by the estimate alone (v0.3.0). At most 10.';
COMMENT ON COLUMN routing.settings.quality_explore_weight IS
    'A learned model below the floor is drawn for (quality_explore_share) only while its label weight for the task is below this: re-measuring takes about this much evidence per half-life, whatever the traffic. 0: never; at most 1000000.';

COMMIT;
