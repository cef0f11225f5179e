-- Verify routing_ledger:validate_usage_classes on pg

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
