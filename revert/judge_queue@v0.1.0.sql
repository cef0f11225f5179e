-- Revert routing_ledger:judge_queue from pg
--
-- Labels already recorded stay in routing_outcomes and routing.model_task_quality:
-- they are data, not part of this change's objects.

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.record_judgement(bigint, text, numeric, text, text);
DROP FUNCTION routing.claim_judge_batch(text, int);
DROP FUNCTION routing._claim_judge_batch(text, int, timestamptz);
DROP VIEW routing.judge_queue;

COMMIT;
