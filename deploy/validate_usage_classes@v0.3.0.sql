-- Deploy routing_ledger:validate_usage_classes to pg
-- requires: usage_classes
-- requires: model_prices
--
-- VALIDATE the CHECKs usage_classes and model_prices added NOT VALID: a scan under
-- SHARE UPDATE EXCLUSIVE, which blocks no read or write.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_usage_classes;
ALTER TABLE routing.catalog_changes VALIDATE CONSTRAINT catalog_changes_table_name_check;

COMMIT;
