-- Verify routing_ledger:quality_gate on pg

BEGIN;

SELECT quality_gate_z, quality_explore_weight FROM routing.settings WHERE false;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_constraint
             WHERE conrelid = 'routing.settings'::regclass
               AND conname IN ('settings_quality_gate_z_check', 'settings_quality_explore_weight_check')) = 2,
           'routing.settings.quality_gate_z or quality_explore_weight has no CHECK';
END
$$;

ROLLBACK;
