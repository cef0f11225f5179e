-- Schedule routing-ledger's maintenance inside PostgreSQL with pg_cron.
--
--   psql -v ON_ERROR_STOP=1 -d <the database pg_cron is installed in> \
--        [-v ledger_db=<the routing-ledger database, default: this one>] \
--        [-v reap_schedule='* * * * *'] [-v reap_older_than='1 hour'] \
--        [-v budget_check_schedule='* * * * *'] \
--        -f sql/schedule_maintenance.sql
--
-- What it schedules, each as a pg_cron job named for it (re-running the script replaces
-- the jobs, so it is safe to run again after changing a variable):
--
--   routing-ledger-reap     routing.reap_stuck_inferences(reap_older_than), every minute by
--                           default: attempts routed past the threshold become failed /
--                           abandoned, their outcomes failed_abandoned (batched, SKIP LOCKED,
--                           safe beside live traffic and beside itself).
--   routing-ledger-budget-drift
--                           routing.check_budget_drift(), every minute by default: the exact
--                           check of the daily caps' running totals against the ledger, which
--                           integrity_report's budget_spend_drift then reads (for 5 minutes)
--                           instead of summing the day's outcomes at every metrics scrape.
--   routing-ledger-partitions
--                           partition upkeep, once the package has a function for it
--                           (routing.maintain_partitions()). This release does not partition
--                           the ledger and has no such function, so this script schedules
--                           nothing for it and says so.
--
-- The jobs run as the role running this script (pg_cron's rule); it needs routing_ops in
-- the ledger database. pg_cron is available on most managed PostgreSQL (RDS, Cloud SQL,
-- Azure, Supabase) but is not needed by the package: without it, run
-- `routing-ledger reap --every 60s` under a supervisor (systemd, Kubernetes) instead.
-- Stop with: SELECT cron.unschedule('routing-ledger-reap');
--            SELECT cron.unschedule('routing-ledger-budget-drift');

\set ON_ERROR_STOP 1
\if :{?ledger_db}
\else
SELECT current_database() AS ledger_db \gset
\endif
\if :{?reap_schedule}
\else
\set reap_schedule '* * * * *'
\endif
\if :{?reap_older_than}
\else
\set reap_older_than '1 hour'
\endif
\if :{?budget_check_schedule}
\else
\set budget_check_schedule '* * * * *'
\endif

SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') AS has_pg_cron \gset
\if :has_pg_cron
\else
DO $$
BEGIN
    RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
        USING HINT = 'Run this script in the database pg_cron runs in (cron.database_name), or schedule `routing-ledger reap --every 60s` under a supervisor.';
END
$$;
\endif

-- The threshold must be one the reaper accepts; checking it here fails now, not every minute.
SELECT :'reap_older_than'::interval AS reap_older_than_checked \gset

BEGIN;

SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = 'routing-ledger-reap';
SELECT cron.schedule_in_database(
           'routing-ledger-reap',
           :'reap_schedule',
           format('SELECT routing.reap_stuck_inferences(%L::interval)', :'reap_older_than'),
           :'ledger_db') AS reap_job_id \gset

SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = 'routing-ledger-budget-drift';
SELECT cron.schedule_in_database(
           'routing-ledger-budget-drift',
           :'budget_check_schedule',
           'SELECT routing.check_budget_drift()',
           :'ledger_db') AS budget_job_id \gset

COMMIT;

\echo scheduled routing-ledger-reap (job :reap_job_id): reap_stuck_inferences(:'reap_older_than') on :"ledger_db", schedule :'reap_schedule'
\echo scheduled routing-ledger-budget-drift (job :budget_job_id): check_budget_drift() on :"ledger_db", schedule :'budget_check_schedule'
\echo partition upkeep: nothing to schedule (this release does not partition the ledger; no routing.maintain_partitions())
