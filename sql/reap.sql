-- Reaps stuck attempts: routed attempts more than older_than past due (the later of
-- created_at and not_before) become failed / abandoned with a message saying so, and
-- their in-flight outcomes failed_abandoned. Prints how many rows it closed.
--
--   psql "$DB" -f sql/reap.sql                                   # 1 hour
--   psql "$DB" -v older_than='6 hours' -f sql/reap.sql
--
-- Final: a reaped attempt never goes back to routed, and a completion arriving later is
-- refused (55000) although the provider may have done, and billed, the work. After an
-- orphan repair, reap only once you keep the repair (a reaped row cannot be rolled back).
--
-- One transaction. Locks: row locks only, in batches of 1000, FOR UPDATE SKIP LOCKED on
-- the stuck attempts, then their in-flight outcomes (the write path's order): rows a live
-- completion or a second reaper holds are skipped, nobody waits, nothing deadlocks.

\set ON_ERROR_STOP on
\if :{?older_than}
\else
\set older_than '1 hour'
\endif

SELECT routing.reap_stuck_inferences(:'older_than'::interval) AS closed;
