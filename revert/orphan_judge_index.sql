-- Revert routing_ledger:orphan_judge_index from pg
--
-- No transaction block: DROP INDEX CONCURRENTLY cannot run in one. A partitioned index
-- (the partitioned layout) cannot be dropped concurrently: it is dropped with its
-- partitions' indexes in one statement, which takes ACCESS EXCLUSIVE on the tables for
-- the moment of the drop (no scan), under lock_timeout.

SET lock_timeout = '5s';

SELECT CASE c.relkind
           WHEN 'I' THEN format('DROP INDEX %s', c.oid::regclass)
           ELSE format('DROP INDEX CONCURRENTLY %s', c.oid::regclass) END
  FROM pg_catalog.pg_class c
 WHERE c.oid = to_regclass('routing.routing_outcomes_orphans_judge')
\gexec
