-- Rolls back one applied repair run: every row it changed is restored exactly from its
-- before-image in routing.repair_backup, and the run is marked rolled back.
--
--   psql "$DB" -v run_id=N -f sql/repair_rollback.sql
--
-- Refuses (55000) if the run was already rolled back, if a row of the run changed since
-- (reaped, completed, judged: restoring would undo that), or once the constraint
-- outcome_requires_inference_when_model_chosen is validated.
--
-- Locks: the restored outcomes violate that CHECK, which PostgreSQL enforces on every
-- updated row even while NOT VALID, so the rollback drops it and adds it back NOT VALID
-- (no scan) in its one transaction: ACCESS EXCLUSIVE on routing.routing_outcomes until
-- commit, a fraction of a second for a normal run, during which every reader and writer
-- of the ledger waits. It gives up after a 5 s lock_timeout rather than queue them all
-- behind a long transaction. Also row locks on the run's rows, attempts first, and SHARE
-- ROW EXCLUSIVE on routing.repair_runs (one repair or rollback at a time).

\set ON_ERROR_STOP on
\if :{?run_id}
\else
DO $$ BEGIN RAISE EXCEPTION 'usage: psql -v run_id=N -f sql/repair_rollback.sql' USING ERRCODE = 'invalid_parameter_value'; END $$;
\endif

SELECT routing.rollback_repair(:'run_id'::bigint) AS rows_restored;
