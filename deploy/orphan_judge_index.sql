-- Deploy routing_ledger:orphan_judge_index to pg
-- requires: ledger_tables
-- requires: integrity
--
-- The index behind integrity_report's orphan judge counts (succeeded_not_judgeable and
-- judge_queue subtract the orphans' judge state): the orphans of an older write path,
-- with the two columns those counts read, so they are index-only and their cost follows
-- the orphans, not the ledger. Without it the planner answered them from
-- routing_outcomes_inference (inference_id IS NULL, which is also every rejected and
-- refused outcome of history) and read the heap of each: 10,800 pages and 79 ms at 1 M
-- outcomes, against 3 index pages with it. Partial on the orphan predicate of
-- routing_outcomes_orphans, so the write path never adds an entry to it (its outcomes
-- are never orphans).
--
-- routing_outcomes is the big table: built CONCURRENTLY (no lock that blocks writes),
-- so no transaction block, as in outcome_stream_index; a build that failed half-way
-- leaves an INVALID index of this name, which a re-run drops first and builds again.
-- On a ledger already switched to the partitioned layout (routing_outcomes partitioned),
-- where CONCURRENTLY cannot build a partitioned index, the index is created ON ONLY the
-- parent, built CONCURRENTLY on each partition and attached (the parent's becomes valid
-- once every partition has one); partitions created later get it from the parent.

-- A concurrent build waits for the transactions open when it started, holding only SHARE
-- UPDATE EXCLUSIVE, which blocks no read or write.
SET lock_timeout = '1min';
SET statement_timeout = '30min';

SELECT format('DROP INDEX CONCURRENTLY %s', c.oid::regclass)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
 WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind = 'i' AND NOT x.indisvalid
   AND x.indrelid IN (SELECT 'routing.routing_outcomes'::regclass
                      UNION ALL
                      SELECT h.inhrelid FROM pg_catalog.pg_inherits h
                       WHERE h.inhparent = 'routing.routing_outcomes'::regclass)
   AND c.relname LIKE '%\_orphans\_judge'
\gexec

-- The unpartitioned layout.
SELECT $ddl$CREATE INDEX CONCURRENTLY IF NOT EXISTS routing_outcomes_orphans_judge
    ON routing.routing_outcomes (judge_status, outcome_status)
    WHERE inference_id IS NULL AND chosen_model_slug IS NOT NULL
      AND decision_rule <> 'failed_pre_dispatch'$ddl$
 WHERE (SELECT c.relkind FROM pg_catalog.pg_class c
         WHERE c.oid = 'routing.routing_outcomes'::regclass) = 'r'
\gexec

-- The partitioned layout: the parent's index (metadata only), then each partition's.
SELECT $ddl$CREATE INDEX IF NOT EXISTS routing_outcomes_orphans_judge
    ON ONLY routing.routing_outcomes (judge_status, outcome_status)
    WHERE inference_id IS NULL AND chosen_model_slug IS NOT NULL
      AND decision_rule <> 'failed_pre_dispatch'$ddl$
 WHERE (SELECT c.relkind FROM pg_catalog.pg_class c
         WHERE c.oid = 'routing.routing_outcomes'::regclass) = 'p'
\gexec

SELECT format($ddl$CREATE INDEX CONCURRENTLY IF NOT EXISTS %I
    ON %s (judge_status, outcome_status)
    WHERE inference_id IS NULL AND chosen_model_slug IS NOT NULL
      AND decision_rule <> 'failed_pre_dispatch'$ddl$,
       left(p.relname, 48) || '_orphans_judge', p.oid::regclass)
  FROM pg_catalog.pg_inherits h
  JOIN pg_catalog.pg_class p ON p.oid = h.inhrelid
 WHERE h.inhparent = 'routing.routing_outcomes'::regclass
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits hi
                     JOIN pg_catalog.pg_index x ON x.indexrelid = hi.inhrelid
                    WHERE hi.inhparent = to_regclass('routing.routing_outcomes_orphans_judge')
                      AND x.indrelid = p.oid)
 ORDER BY p.relname
\gexec

SELECT format('ALTER INDEX routing.routing_outcomes_orphans_judge ATTACH PARTITION %s', i.oid::regclass)
  FROM pg_catalog.pg_inherits h
  JOIN pg_catalog.pg_class p ON p.oid = h.inhrelid
  JOIN pg_catalog.pg_class i ON i.relnamespace = p.relnamespace
                            AND i.relname = left(p.relname, 48) || '_orphans_judge'
 WHERE h.inhparent = 'routing.routing_outcomes'::regclass
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits hi WHERE hi.inhrelid = i.oid)
 ORDER BY p.relname
\gexec
