-- Revert routing_ledger:function_comments from pg
--
-- The texts exactly as the changes before left them.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

COMMENT ON FUNCTION routing.reap_stuck_inferences(interval, timestamptz) IS
    $c$Closes attempts still routed p_older_than after they were due or last heard of (the latest of created_at, not_before and heartbeat_at, so a scheduled retry is not reaped early and a heartbeating stream never): status failed, error_code abandoned, an error_message naming the age, the due time and the threshold, completed_at, and, when heartbeats reported partial output, that count and its estimated cost. Their in-flight outcomes become failed_abandoned; attempts from the older write path that belong to no outcome are closed too. Then closes outcomes in flight past the threshold whose newest attempt had already failed (history), with the retry policy's give-up status for that error. Batches of 1000, oldest first, FOR UPDATE SKIP LOCKED, attempts locked before outcomes: safe beside live traffic and beside another reaper (each row is closed by exactly one of them). A completion or failure that arrives afterwards is refused by complete_decision / fail_inference with 55000, although the provider may have done (and billed) the work. Returns the number of attempts reaped plus outcomes closed in the second pass. 22023 on a bad argument: p_older_than NULL or outside 0..100 years, p_as_of NULL or not a finite timestamp in 1970..9999.$c$;

COMMENT ON FUNCTION routing.check_budget_drift(timestamptz) IS
    $c$Re-derives every running daily spend (routing.budget_spend) of p_as_of's budget day from the ledger, returns how many differ, and records the count for integrity_report's budget_spend_drift (which uses a check at most 5 minutes old, and re-derives the day itself otherwise). Scheduled every minute with the reaper. Reads the day's outcomes of every capped agent (index-only). 22023 on p_as_of outside 1970..9999.$c$;

COMMENT ON FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric) IS
    $c$Adds the model p_slug or sets every column given (routing_admin). Prices NULL or 0 and q_prior NULL leave it not enrolled. Returns inserted, updated or unchanged; each change is audited in routing.catalog_changes. 22023 on a bad argument: empty slug, provider or provider_model, a negative or non-finite price, q_prior outside 0..1, NULL m_allowed or enabled, an unknown endpoint, a negative expected latency.$c$;

COMMENT ON FUNCTION routing.explain_outcome(bigint) IS
    $c$The full router document of an outcome, every candidate and every dropped model with its reason, exactly as choose_route returned it at decision time (jsonb-equal), rebuilt from the outcome's compact explanation and its shared route snapshot; plus the refusal of a request refused before dispatch. An outcome stored whole is returned as stored. P0002 on an unknown outcome, 22023 on NULL.$c$;

COMMENT ON FUNCTION routing.partition_ledger(bigint) IS
    $c$Switches an unpartitioned ledger to the time-partitioned layout in the caller's transaction (rows copied, every guarantee kept; the previous width, the current one and two ahead, a history pair for older rows, a DEFAULT pair). Returns the rows moved. Locks both tables with lock_timeout 500ms (55P03: retry). 55000 when already partitioned, when more than p_max_rows rows (the online migration in docs/scaling.md is for those) or when an outside table references the ledger; 22023 on a bad p_max_rows. Owner only.$c$;

COMMENT ON FUNCTION routing.create_partitions_ahead(int, timestamptz) IS
    $c$Partition upkeep: makes sure the partition pairs (routing_outcomes_pX, inferences_pX) exist for the width before p_as_of's, p_as_of's and p_ahead (>= 2) after, in settings.partition_width (UTC). One row per range: created, exists, or blocked_by_default_rows (rows already in the DEFAULT pair; see docs/scaling.md). Idempotent and safe beside itself (advisory lock). 55000 when the ledger is not partitioned; 22023 on a bad argument.$c$;

COMMENT ON FUNCTION routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz) IS
    $c$Retention by partition: every pair whose range ended at least p_age (>= 1 day) before p_as_of. Dry run by default (would_drop, or refused: reason); with p_apply detaches (lock_timeout 2s) and drops each pair. Refuses (55000, naming the partition; nothing dropped) a pair holding in-flight outcomes or routed attempts, succeeded outcomes not yet judged (unless p_include_unjudged), or rows an open repair run changed. The dropped requests' keys go with routing.purge_request_keys. Archive first with pg_dump -t (docs/scaling.md). 55000 when not partitioned; 22023 on a bad argument.$c$;

COMMENT ON FUNCTION routing.purge_request_keys(int) IS
    $c$Deletes up to p_batch idempotency keys of requests whose partition retention dropped (older than every retained range); returns how many (0: done). Run after drop_partitions_older_than, in a loop, each call its own transaction. Until then a retry of such a request raises 55000 instead of being decided again. 22023 on a bad p_batch.$c$;

COMMENT ON FUNCTION routing.migrate_ledger_start() IS
    $c$Online migration to the partitioned ledger, step 1: builds the empty partitioned twins (routing_outcomes_part, inferences_part) and mirror triggers on the live tables, in the caller's transaction (lock_timeout 100ms: 55P03, run it again). Then migrate_ledger_copy until 0, migrate_ledger_verify, migrate_ledger_switch, migrate_ledger_finish; migrate_ledger_back_out at any point before finish. 55000 when already partitioned or a migration runs. Owner only.$c$;

COMMENT ON FUNCTION routing.migrate_ledger_copy(int) IS
    $c$Online migration, step 2: copies the next p_batch (1..1000000) rows of history into the partitioned twins (outcomes with their request keys, then attempts with their partition key), ON CONFLICT DO NOTHING (a mirrored row is newer). Returns a positive count while there was work, 0 once the history is copied; one transaction per call. 55000 when no migration runs; 22023 on a bad p_batch. Owner only.$c$;

COMMENT ON FUNCTION routing.migrate_ledger_verify() IS
    $c$Online migration, step 3: once the history is copied, compares the live and partitioned row counts (and the request keys) in one snapshot; equal, it records the verification the switch-over requires and returns the counts. 55000 when not copied yet or when they differ (back out and start again). Owner only.$c$;

COMMENT ON FUNCTION routing.migrate_ledger_switch(interval) IS
    $c$Online migration, step 4, the bounded switch-over: waits at most p_lock_timeout (1 ms .. 1 min, default 100 ms; 55P03: call it again) for ACCESS EXCLUSIVE on the ledger tables, then, catalog-only, hands the names, indexes, sequence positions, triggers, views and functions to the partitioned tables; the old ones stay as *_v01, kept in step for a back-out. 55000 unless the copy was verified. Owner only.$c$;

COMMENT ON FUNCTION routing.migrate_ledger_finish() IS
    $c$Online migration, step 5: drops the old tables (*_v01) and their mirror triggers, catalog-only under a bounded lock (100 ms; 55P03: call it again); the back-out is no longer possible, routing.unpartition_ledger still is. Then run routing.validate_partition_links(). 55000 before the switch-over. Owner only.$c$;

COMMENT ON FUNCTION routing.migrate_ledger_back_out(interval) IS
    $c$Backs the online migration out, before migrate_ledger_finish: during the copy it drops the partitioned twins and the mirror triggers; after the switch-over it hands the names back to the old tables (which followed every change) under the same bounded lock (p_lock_timeout; 55P03: call it again) and drops the partitioned ones. The ledger is then exactly as before. 55000 when no migration runs. Owner only.$c$;

COMMENT ON FUNCTION routing.validate_partition_links() IS
    $c$After the online migration: validates the partition pairs' foreign keys (added NOT VALID at the switch-over, enforced for new rows since) against the copied history, SHARE UPDATE EXCLUSIVE per partition, so traffic continues. Returns how many it validated; 23503 naming the link history breaks; 55000 while a migration runs. Owner only.$c$;

COMMENT ON TABLE routing.budget_spend IS
    $c$Running daily spend per agent and budget day (routing.settings.spend_day_time_zone): settled costs plus the projected cost of requests in flight, as routing_outcomes would sum them. Reserved by insert_decision, settled by a trigger on routing_outcomes in the same transaction as each write; integrity_report's budget_spend_drift re-derives it.$c$;

COMMENT ON TABLE routing.route_snapshots IS
    $c$Shared, content-addressed record of the router's lists: ranked candidates and dropped models, projected costs replaced by the model's prices (price_in_per_mtok_usd, price_out_per_mtok_usd). Key: sha256 of the router's ranked rows that the content is built from. Outcomes name it in explanation->>'snapshot'; routing.explain_outcome rebuilds the full document.$c$;

COMMENT ON TABLE routing.outcome_request_keys IS
    $c$Idempotency of insert_decision on a partitioned ledger: one row per (agent_id, request_id), naming its outcome (id, created_at), not partitioned, so a retry finds its outcome across partition boundaries. Written by the request-key trigger of the partitioned routing_outcomes; purged after retention. Empty on the unpartitioned layout, whose unique key (request_id, agent_id) does the same.$c$;

COMMENT ON FUNCTION routing.ops_metrics(interval, timestamptz) IS
    'One row per sample (metric, labels, value) for a metrics scrape: the integrity report with each metric''s kind, then the write path over the window ending at p_as_of (routing.describe_metrics lists them). Read-only; every figure is index-driven, so its cost follows the window''s traffic, not the ledger''s size. 22023 on a p_window outside 1 second .. 1 day or a NULL or out-of-range p_as_of.';

COMMENT ON FUNCTION routing.set_model_price(text, text, numeric, timestamptz, int) IS
    'Adds a price: p_usd_per_mtok per million tokens of p_token_class (input, output, cache_read, cache_write, cache_write_1h) for requests of at least p_min_input_tokens input tokens (a long-context tier; 0: every request), in force from p_effective_from (default now; later is fine) until a later row of the same class and tier. Attempts are charged at the rates in force at their created_at, so nothing already charged changes. Audited in catalog_changes. Returns inserted, updated (a price not yet in force corrected) or unchanged (that rate is already in force then, and nothing later is announced: no row). 22023 on a bad argument (an effective_from in the past included), P0002 on an unknown model.';

COMMENT ON TABLE routing.model_prices IS
    'Versioned prices per model and token class (input, output, cache_read, cache_write, cache_write_1h), USD per million tokens. The rate of a (class, min_input_tokens) pair at t is its row with the latest effective_from <= t; the pair with the largest min_input_tokens <= the request''s input tokens applies to the whole request. Written by set_model_price and by upsert_model (input and output, tier 0); never updated once in force.';

COMMIT;
