-- Revert routing_ledger:outcome_stream_index from pg
--
-- No transaction block: DROP INDEX CONCURRENTLY cannot run in one.

SET lock_timeout = '5s';

DROP INDEX CONCURRENTLY IF EXISTS routing.routing_outcomes_stream_endings;
