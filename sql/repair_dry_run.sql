-- Dry run of the orphan repair: what routing.repair_orphans would do, and to which rows.
--
--   psql "$DB" -f sql/repair_dry_run.sql                         # 3-second window
--   psql "$DB" -v window='1 second' -f sql/repair_dry_run.sql
--
-- Writes nothing, not even a run record (run_id is NULL), so it also runs on a read-only
-- connection. Locks: ACCESS SHARE on the ledger tables (plain reads): blocks nobody.
-- Actions: would_relink (one-to-one: same agent, model and cost, within the window, each
-- the other's only candidate), ambiguous (one row per competing attempt), no_match.

\set ON_ERROR_STOP on
\if :{?window}
\else
\set window '3 seconds'
\endif

SELECT action, count(DISTINCT outcome_id) AS outcomes, count(*) AS rows
  FROM routing.repair_orphans(:'window'::interval, false)
 GROUP BY action
 ORDER BY action;

SELECT outcome_id, inference_id, action
  FROM routing.repair_orphans(:'window'::interval, false)
 ORDER BY outcome_id, inference_id;
