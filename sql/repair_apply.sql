-- Applies the orphan repair: re-links the one-to-one matches both ways, after writing
-- every changed row's before-image to routing.repair_backup. Prints the run_id, which
-- sql/repair_rollback.sql takes to undo it. Ambiguous and unmatched orphans are left
-- alone (docs/runbook.md, step 6). Run sql/repair_dry_run.sql first.
--
--   psql "$DB" -f sql/repair_apply.sql                           # 3-second window
--   psql "$DB" -v window='1 second' -f sql/repair_apply.sql
--
-- One transaction. Locks: SHARE ROW EXCLUSIVE on routing.repair_runs (one applied run at
-- a time: a second one waits, then finds nothing left to link; readers are not blocked),
-- then row locks (FOR UPDATE) on the attempts and outcomes it re-links, attempts first.
-- Those are history no live request writes: live traffic is not blocked.

\set ON_ERROR_STOP on
\if :{?window}
\else
\set window '3 seconds'
\endif

WITH run AS (
    SELECT * FROM routing.repair_orphans(:'window'::interval, true)
)
SELECT run_id, action, count(DISTINCT outcome_id) AS outcomes
  FROM run
 GROUP BY run_id, action
 ORDER BY action;
