-- Deploy routing_ledger:validate_ledger_rules to pg
-- requires: ledger_rules
--
-- Validates the CHECKs inference_rules and outcome_rules, added NOT VALID by ledger_rules:
-- a scan of each ledger table under SHARE UPDATE EXCLUSIVE, which lets reads and writes go
-- on. A row written before v0.3.1 that breaks a rule fails it with 23514 naming the rule.
-- On a partitioned ledger, ledger_layout_ddl records them as validated.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_rules;
ALTER TABLE routing.routing_outcomes VALIDATE CONSTRAINT outcome_rules;

UPDATE routing.ledger_layout_ddl d
   SET validated = true
 WHERE d.kind = 'constraint' AND d.name IN ('inference_rules', 'outcome_rules');

COMMIT;
