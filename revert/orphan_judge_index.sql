-- Revert routing_ledger:orphan_judge_index from pg
--
-- No transaction block: DROP INDEX CONCURRENTLY cannot run in one.

SET lock_timeout = '5s';

DROP INDEX CONCURRENTLY IF EXISTS routing.routing_outcomes_orphans_judge;
