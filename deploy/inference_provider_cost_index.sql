-- Deploy routing_ledger:inference_provider_cost_index to pg
-- requires: usage_classes
--
-- The index behind integrity_report's cost_mismatch_24h: attempts that carry a
-- provider-reported cost, by completion time. Partial, so it holds only those attempts
-- (none of the history before usage_classes), and the 24-hour count reads a few pages.
--
-- inferences is the big table, so on the unpartitioned layout the index is built
-- CONCURRENTLY (no lock that blocks writes); CONCURRENTLY cannot run inside a transaction
-- block, so this script has none. A partitioned parent cannot be indexed concurrently:
-- there it is a plain CREATE INDEX, which recurses to the partitions and holds a SHARE
-- lock on each while it scans it (the predicate matches no row written before this
-- plan). A build that failed half-way leaves an INVALID index; a re-run drops it first.

SET lock_timeout = '1min';
SET statement_timeout = '30min';

SELECT format('DROP INDEX CONCURRENTLY %s', c.oid::regclass)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
 WHERE c.oid = to_regclass('routing.inferences_provider_cost')
   AND NOT x.indisvalid
   AND c.relkind = 'i'
\gexec

SELECT format('CREATE INDEX %s IF NOT EXISTS inferences_provider_cost ON routing.inferences (completed_at) '
              'WHERE provider_cost_usd IS NOT NULL',
              CASE WHEN c.relkind = 'p' THEN '' ELSE 'CONCURRENTLY' END)
  FROM pg_catalog.pg_class c
 WHERE c.oid = 'routing.inferences'::regclass
\gexec
