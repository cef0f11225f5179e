-- Decides the orphans repair_orphans must leave alone (ambiguous, or nothing matched),
-- once they are older than older_than: an orphan that owns an attempt is linked to its
-- newest one and follows it; one that owns none gets a closing attempt (failed /
-- abandoned, naming the competing inferences) and, if still in flight, becomes
-- failed_abandoned. A succeeded orphan with no answer keeps its status but is marked
-- cannot_evaluate for the judge. Run sql/repair_apply.sql and sql/reap.sql first; it
-- reports relink_first, too_recent and held_with_group for what it leaves alone.
--
--   psql "$DB" -f sql/close_unmatched.sql                          # dry run: would_close
--   psql "$DB" -v apply=1 -f sql/close_unmatched.sql               # apply, prints run_id
--   psql "$DB" -v apply=1 -v older_than='1 day' -v window='3 seconds' -f sql/close_unmatched.sql
--
-- Undo an applied run with sql/repair_rollback.sql -v run_id=N (the closing attempts are
-- deleted, the outcomes restored), while the constraint is still NOT VALID.
--
-- One transaction. Dry run: plain reads. Apply: SHARE ROW EXCLUSIVE on
-- routing.repair_runs (one repair, close or rollback at a time), then row locks on each
-- orphan it closes (and the attempt it owns, first). Live traffic is not blocked.

\set ON_ERROR_STOP on
\if :{?window}
\else
\set window '3 seconds'
\endif
\if :{?older_than}
\else
\set older_than '1 hour'
\endif
\if :{?apply}
\set apply_flag true
\else
\set apply_flag false
\endif

SELECT run_id, action, count(*) AS outcomes, array_agg(outcome_id ORDER BY outcome_id) AS outcome_ids
  FROM routing.close_unmatched_orphans(:'window'::interval, :'older_than'::interval, :apply_flag)
 GROUP BY run_id, action
 ORDER BY action;
