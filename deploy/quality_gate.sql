-- Deploy routing_ledger:quality_gate to pg
-- requires: learned_quality
--
-- The setting of the floor cleared with confidence (issue 20; the rule is router's):
-- routing.settings.quality_gate_z, how many of its standard deviations a learned model's
-- estimate must clear the floor by, in proportion to the share of the estimate its prior
-- still carries. 0 is v0.3.0's rule (the estimate alone).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- A constant default: no table rewrite, and the settings row is one row.
ALTER TABLE routing.settings
    ADD COLUMN IF NOT EXISTS quality_gate_z numeric NOT NULL DEFAULT 0.5
        CONSTRAINT settings_quality_gate_z_check CHECK (quality_gate_z >= 0 AND quality_gate_z <= 10);
COMMENT ON COLUMN routing.settings.quality_gate_z IS
    'z: a model with label weight w is admitted by its estimate only when estimate - z * sd * k / (k + w) clears the floor (k = quality_prior_weight); otherwise only by its capped draw. 0: by the estimate alone (v0.3.0). At most 10.';

COMMIT;
