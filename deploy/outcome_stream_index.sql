-- Deploy routing_ledger:outcome_stream_index to pg
-- requires: outcome_stream_statuses
--
-- The index behind integrity_report's streams_interrupted_24h and requests_cancelled_24h:
-- outcomes that ended failed_stream_interrupted or cancelled, by status and completion
-- time. Partial, so it holds only those endings and the counts read a few pages.
--
-- routing_outcomes is the big table, so the index is built CONCURRENTLY: no lock that
-- blocks writes, which a plain CREATE INDEX would hold for the whole scan. CONCURRENTLY
-- cannot run inside a transaction block, so this script has none (each statement is
-- its own transaction). A build that failed half-way leaves an INVALID index of this
-- name; a re-run drops it first (\gexec runs the DROP only then) and builds it again.

-- A concurrent build waits for every transaction that was open when it started (lock
-- waits on their ids, bounded by lock_timeout) while holding only SHARE UPDATE EXCLUSIVE,
-- which blocks no read or write: a minute is a safe wait for a gateway's short
-- transactions.
SET lock_timeout = '1min';
SET statement_timeout = '30min';

SELECT format('DROP INDEX CONCURRENTLY %s', c.oid::regclass)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
 WHERE c.oid = to_regclass('routing.routing_outcomes_stream_endings')
   AND NOT x.indisvalid
\gexec

CREATE INDEX CONCURRENTLY IF NOT EXISTS routing_outcomes_stream_endings
    ON routing.routing_outcomes (outcome_status, completed_at)
    WHERE outcome_status IN ('failed_stream_interrupted', 'cancelled');
