-- Revert routing_ledger:inference_provider_cost_index from pg
--
-- No transaction block: DROP INDEX CONCURRENTLY cannot run in one (nor on a partitioned
-- index, which is dropped plainly).

SET lock_timeout = '5s';

SELECT format('DROP INDEX %s IF EXISTS routing.inferences_provider_cost',
              CASE WHEN c.relkind = 'p' THEN '' ELSE 'CONCURRENTLY' END)
  FROM pg_catalog.pg_class c
 WHERE c.oid = 'routing.inferences'::regclass
\gexec
