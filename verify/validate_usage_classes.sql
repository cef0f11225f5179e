-- Verify routing_ledger:validate_usage_classes on pg
--
-- Sqitch runs only this verify script of the reworked change: both CHECKs the released
-- change validated are valid, inference_usage_classes as re-pointed by usage_classes.

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT bool_and(c.convalidated) FROM pg_catalog.pg_constraint c
             WHERE (c.conrelid = 'routing.inferences'::regclass
                    AND c.conname = 'inference_usage_classes')
                OR (c.conrelid = 'routing.catalog_changes'::regclass
                    AND c.conname = 'catalog_changes_table_name_check')),
           'the usage-class CHECKs are not validated';
END
$$;

ROLLBACK;
