-- Deploy routing_ledger:validate_usage_classes to pg
-- requires: validate_usage_classes@v0.3.0
-- requires: usage_classes
--
-- VALIDATE the CHECK the rework of usage_classes re-added NOT VALID: a scan under SHARE
-- UPDATE EXCLUSIVE, which blocks no read or write. Its test is the released one, so this
-- can only fail on a row someone wrote by hand in between.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_usage_classes;

COMMIT;
