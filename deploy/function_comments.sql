-- Deploy routing_ledger:function_comments to pg
-- requires: reaper
-- requires: partitioned_ledger
-- requires: partition_migration
-- requires: budget_ledger
-- requires: catalog_admin
-- requires: route_snapshots
-- requires: outcome_request_keys
-- requires: ops_metrics
-- requires: model_prices
--
-- A COMMENT ON text says the guarantee and the SQLSTATEs in a few lines; the reasoning
-- lives in the defining change's header. These are the comments that were longer than 300
-- characters, re-issued at most 300 each (tests/pgtap/function_comments.sql keeps them so).
-- Comments only: nothing is rebuilt, safe to re-run.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

COMMENT ON FUNCTION routing.reap_stuck_inferences(interval, timestamptz) IS
    'Fails attempts routed p_older_than past the latest of created_at, not_before and '
    'heartbeat_at (abandoned) and their in-flight outcomes, safe beside another reaper; returns '
    'how many. A later completion gets 55000, though the provider may have done (and billed) the '
    'work. 22023 on a bad argument.';

COMMENT ON FUNCTION routing.check_budget_drift(timestamptz) IS
    'Re-derives every running daily spend of p_as_of''s budget day from the ledger and returns how '
    'many differ; integrity_report''s budget_spend_drift uses that count for 5 minutes. 22023 on '
    'p_as_of outside 1970..9999.';

COMMENT ON FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric) IS
    'Adds the model p_slug or sets every column given (routing_admin), audited in '
    'routing.catalog_changes; returns inserted, updated or unchanged. A price NULL or 0, or a '
    'NULL q_prior, leaves it not enrolled. 22023 on a bad argument, naming it.';

COMMENT ON FUNCTION routing.explain_outcome(bigint) IS
    'The outcome''s full router document, every candidate and dropped model with its reason, '
    'exactly as choose_route returned it (jsonb-equal); or the refusal of a request refused '
    'before dispatch. P0002 on an unknown outcome, 22023 on NULL.';

COMMENT ON FUNCTION routing.partition_ledger(bigint) IS
    'Switches the ledger to the time-partitioned layout in the caller''s transaction, every row '
    'and guarantee kept; returns the rows moved. Owner only. 55P03 after a 500 ms lock wait '
    '(retry); 55000 when already partitioned, over p_max_rows rows or referenced from outside; '
    '22023 on a bad p_max_rows.';

COMMENT ON FUNCTION routing.create_partitions_ahead(int, timestamptz) IS
    'Makes sure the partition pairs exist from the width before p_as_of''s to p_ahead (>= 2) after '
    'it; one row per range: created, exists or blocked_by_default_rows. Idempotent, safe beside '
    'itself. 55000 when the ledger is not partitioned; 22023 on a bad argument.';

COMMENT ON FUNCTION routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz) IS
    'Retention: partition pairs that ended at least p_age (>= 1 day) before p_as_of; a dry run '
    'unless p_apply. A pair with work in flight, unjudged successes (unless p_include_unjudged) '
    'or an open repair''s rows is refused (55000, nothing dropped). 55000 when not partitioned; '
    '22023 on a bad argument.';

COMMENT ON FUNCTION routing.purge_request_keys(int) IS
    'Deletes up to p_batch idempotency keys of requests whose partitions retention dropped; '
    'returns how many (0: done). Until then a retry of such a request gets 55000. Call it in a '
    'loop, one transaction each. 22023 on a bad p_batch.';

COMMENT ON FUNCTION routing.migrate_ledger_start() IS
    'Online migration, step 1 (then copy, verify, switch, finish; back_out before finish): builds '
    'the empty partitioned twins and the mirror triggers. Owner only. 55P03 after a 100 ms lock '
    'wait (run it again); 55000 when already partitioned or a migration runs.';

COMMENT ON FUNCTION routing.migrate_ledger_copy(int) IS
    'Online migration, step 2: copies the next p_batch (1..1000000) history rows into the '
    'partitioned twins; returns a positive count while there is work, 0 when done. One '
    'transaction per call. Owner only. 55000 when no migration runs; 22023 on a bad p_batch.';

COMMENT ON FUNCTION routing.migrate_ledger_verify() IS
    'Online migration, step 3: compares the live and partitioned counts in one snapshot; equal, '
    'it records the verification the switch-over needs and returns them. Owner only. 55000 when '
    'not fully copied or when they differ (back out, start again).';

COMMENT ON FUNCTION routing.migrate_ledger_switch(interval) IS
    'Online migration, step 4: hands the ledger''s names to the partitioned tables, catalog-only, '
    'within a lock wait of p_lock_timeout (1 ms .. 1 min); the old tables stay in step as *_v01 '
    'for a back-out. Owner only. 55P03: call it again; 55000 unless the copy was verified.';

COMMENT ON FUNCTION routing.migrate_ledger_finish() IS
    'Online migration, step 5: drops the old *_v01 tables and the mirror triggers, catalog-only; '
    'no back-out after it (unpartition_ledger remains). Then run validate_partition_links. Owner '
    'only. 55P03 after a 100 ms lock wait (call it again); 55000 before the switch-over.';

COMMENT ON FUNCTION routing.migrate_ledger_back_out(interval) IS
    'Backs the online migration out at any step before finish; the ledger is then exactly as '
    'before. After the switch-over it waits at most p_lock_timeout for its lock (55P03: call it '
    'again). Owner only. 55000 when no migration runs.';

COMMENT ON FUNCTION routing.validate_partition_links() IS
    'After the online migration: validates the partition pairs'' foreign keys against the copied '
    'history, one partition at a time under SHARE UPDATE EXCLUSIVE (traffic continues); returns '
    'how many. Owner only. 23503 naming a broken link; 55000 while a migration runs.';

COMMENT ON TABLE routing.budget_spend IS
    'Running daily spend per agent and budget day (settings.spend_day_time_zone): settled costs '
    'plus the projected cost of requests in flight, kept in step with routing_outcomes in each '
    'write''s transaction; integrity_report''s budget_spend_drift checks it.';

COMMENT ON TABLE routing.route_snapshots IS
    'The router''s ranked and dropped lists, shared and content-addressed (sha256 of the ranked '
    'rows), with the model''s prices in place of projected costs. An outcome names its snapshot in '
    'explanation->>''snapshot''; routing.explain_outcome rebuilds the document.';

COMMENT ON TABLE routing.outcome_request_keys IS
    'Idempotency on a partitioned ledger: one row per (agent_id, request_id) naming its outcome, '
    'unpartitioned, so a retry finds its outcome across partitions. Written by a trigger, purged '
    'after retention; empty on the unpartitioned layout.';

COMMENT ON FUNCTION routing.ops_metrics(interval, timestamptz) IS
    'One row per sample (metric, labels, value) for a metrics scrape: the integrity report, then '
    'the write path over the window ending at p_as_of (routing.describe_metrics lists them). '
    'Read-only; its cost follows the window''s traffic. 22023 on p_window outside 1 second .. 1 '
    'day or a bad p_as_of.';

COMMENT ON FUNCTION routing.set_model_price(text, text, numeric, timestamptz, int) IS
    'Adds a price of p_token_class (input, output, cache_read, cache_write, cache_write_1h) for '
    'requests of p_min_input_tokens or more, from p_effective_from; audited. Returns inserted, '
    'updated (not yet in force) or unchanged. 22023 on a bad argument or a past p_effective_from, '
    'P0002 on an unknown model.';

COMMENT ON TABLE routing.model_prices IS
    'Versioned prices per model, token class and long-context tier (min_input_tokens), in USD per '
    'Mtok: at t, a pair''s row with the latest effective_from <= t; the largest tier <= the '
    'request''s input tokens applies to all of it. Written by set_model_price and upsert_model; '
    'never updated once in force.';

COMMIT;
