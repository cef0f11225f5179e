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

SET lock_timeout = '1min';
SET statement_timeout = '30min';

SELECT format('DROP INDEX CONCURRENTLY %s', c.oid::regclass)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
 WHERE c.oid = to_regclass('routing.routing_outcomes_orphans_judge')
   AND NOT x.indisvalid
\gexec

CREATE INDEX CONCURRENTLY IF NOT EXISTS routing_outcomes_orphans_judge
    ON routing.routing_outcomes (judge_status, outcome_status)
    WHERE inference_id IS NULL AND chosen_model_slug IS NOT NULL
      AND decision_rule <> 'failed_pre_dispatch';
