-- Verify routing_ledger:quality_gate on pg

BEGIN;

SELECT quality_gate_z FROM routing.settings WHERE false;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_constraint
             WHERE conrelid = 'routing.settings'::regclass AND conname = 'settings_quality_gate_z_check') = 1,
           'routing.settings.quality_gate_z has no CHECK';
END
$$;

ROLLBACK;
