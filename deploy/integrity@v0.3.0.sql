-- Deploy routing_ledger:integrity to pg
-- requires: integrity@v0.1.0
-- requires: inference_streaming
-- requires: outcome_stream_index
-- requires: argument_checks
-- requires: budget_ledger
--
-- What an operator looks at first on the day something went wrong: one row per
-- metric, each a count of rows that break (or, for the informational ones, describe)
-- the ledger's promise that every routed request ends in exactly one terminal state
-- and every dispatched outcome is linked to its inference.
--
-- Every count is driven by a partial index built by ledger_tables (same expressions,
-- same predicates), so its cost follows the size of the anomaly, not of the ledger:
-- on a healthy database with millions of outcomes the report reads a few index pages.
-- A check that no index can answer (does every outcome's inference belong to it?)
-- would make the report as slow as the ledger is big, so it is a view of its own,
-- routing.link_mismatches, that an operator queries knowing it reads both tables.
--
-- Each metric is described in routing.integrity_metrics, so that the database, not
-- a client, says which ones are violations (a doctor exits non-zero on those) and
-- which only inform.
--
-- v0.2: stuck_routed_1h (and the view stuck_inferences) count an attempt's age from the
-- latest of created_at, not_before and heartbeat_at (routing._routed_past_due, the
-- reaper's own predicate); two info metrics count the streams interrupted
-- (failed_stream_interrupted) and the requests cancelled in the 24 hours before p_as_of,
-- on the partial index routing_outcomes_stream_endings; p_as_of is bounded (a finite
-- timestamp in 1970..9999, so p_as_of - 24 hours always fits).
-- Flat in history (issue 12, P6): terminal_outcome_with_routed_inference looks each routed
-- attempt's outcome up by key (a subplan, whatever the ledger's size), and the orphans'
-- judge counts are index-only on routing_outcomes_orphans_judge, the covering partial
-- index of the later change orphan_judge_index (built CONCURRENTLY, so it cannot live in
-- this transaction); before it exists they are right, only slower on a big ledger.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.integrity_metrics (
    metric      text PRIMARY KEY,
    ordinal     int  NOT NULL,
    -- violation: must be 0 on a healthy ledger; info: a gauge an operator reads.
    kind        text NOT NULL CHECK (kind IN ('violation', 'info')),
    description text NOT NULL
);
COMMENT ON TABLE routing.integrity_metrics IS
    'The metrics routing.integrity_report returns, in its order: violation (0 on a healthy ledger; what a doctor fails on) or info, and what each counts.';

INSERT INTO routing.integrity_metrics (metric, ordinal, kind, description) VALUES
    ('orphan_outcomes', 1, 'violation',
     'Outcomes whose model was dispatched (chosen_model_slug set, not failed_pre_dispatch) but that name no inference. Only history from the older two-phase write path can be here: routing.repair_orphans re-links the one-to-one matches; the ambiguous and unmatched ones stay until a human decides.'),
    ('orphan_outcomes_24h', 2, 'violation',
     'orphan_outcomes created in the 24 hours before p_as_of. Non-zero means something still writes through the old path (the constraint forbids it to the functions).'),
    ('stuck_routed_1h', 3, 'violation',
     'Inferences still routed more than 1 hour after they were due or last heard of (the latest of created_at, not_before and heartbeat_at). routing.reap_stuck_inferences closes them.'),
    ('terminal_outcome_with_routed_inference', 4, 'violation',
     'Routed inferences whose outcome (by inferences.outcome_id or by routing_outcomes.inference_id) is already terminal: an attempt nobody will ever complete.'),
    ('outcomes_without_terminal_state_1h', 5, 'violation',
     'Outcomes still in flight (outcome_status NULL) more than 1 hour after they were created.'),
    ('in_flight', 6, 'info',
     'Outcomes in flight now (outcome_status NULL).'),
    ('routed_inferences', 7, 'info',
     'Attempts routed now (dispatched or scheduled, not yet succeeded or failed).'),
    ('unowned_inferences', 8, 'info',
     'Inferences with outcome_id NULL: history from the older write path, which never wrote that column. repair_orphans links those that match an orphan outcome one-to-one; the others are earlier attempts of old requests or have no outcome.'),
    ('unowned_inferences_linked_by_outcome', 9, 'info',
     'Unowned inferences that an outcome nevertheless points at (routing_outcomes.inference_id): the old path''s back-fill, linked one way only.'),
    ('succeeded_not_judgeable', 10, 'info',
     'Succeeded outcomes that can never enter the judge queue: judge_status NULL (written before the judge existed) or no inference to judge. Lost training data until re-linked or relabelled.'),
    ('judge_queue', 11, 'info',
     'Outcomes waiting for the judge (the rows of routing.judge_queue).'),
    ('judge_claimed', 12, 'info',
     'Outcomes claimed by a judge worker and not yet recorded.'),
    ('judge_claims_expired', 13, 'info',
     'Claims whose lease ended before p_as_of; the next claim_judge_batch takes them back.'),
    ('streams_interrupted_24h', 14, 'info',
     'Requests that ended failed_stream_interrupted in the 24 hours before p_as_of: the provider''s stream broke (or stalled, or was malformed) after the caller had seen output, so nothing could be retried. Their partial cost is on the outcome.'),
    ('requests_cancelled_24h', 15, 'info',
     'Requests that ended cancelled in the 24 hours before p_as_of: the caller stopped (the end user disconnected, its own deadline), before or during the stream.'),
    -- 16 is budget_ledger's budget_spend_drift.
    ('rows_in_default_partition', 17, 'violation',
     'Rows of a partitioned ledger in its DEFAULT partitions (routing_outcomes_default, inferences_default): writes no time partition covered, because partition upkeep (routing.create_partitions_ahead, scheduled daily) has not run ahead. The writes succeeded and are kept; create the missing partitions. Always 0 on an unpartitioned ledger.'),
    ('cost_mismatch_24h', 18, 'info',
     'Attempts completed in the 24 hours before p_as_of whose provider-reported cost (inferences.provider_cost_usd) and computed cost (cost_usd, at routing.model_prices; NULL counts as 0) differ by more than 1 % of the provider''s figure and more than 0.000001 USD. A stale or missing price row shows here first: add the provider''s current price with routing.set_model_price.')
ON CONFLICT (metric) DO UPDATE
   SET ordinal = excluded.ordinal, kind = excluded.kind, description = excluded.description;

-- The violation rows_in_default_partition: rows no partition covered (upkeep is not
-- running) on a ledger partitioned by the later change partitioned_ledger. The DEFAULT
-- pair is empty on a healthy ledger, so counting it is cheap; 0 on the unpartitioned
-- layout, which has no such tables. By name, so it needs nothing the switch has not built.
CREATE OR REPLACE FUNCTION routing._rows_in_default_partition()
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_total bigint := 0;
    v_rows  bigint;
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['routing_outcomes_default', 'inferences_default'] LOOP
        IF to_regclass('routing.' || v_table) IS NOT NULL THEN
            EXECUTE format('SELECT count(*) FROM routing.%I', v_table) INTO v_rows;
            v_total := v_total + v_rows;
        END IF;
    END LOOP;
    RETURN v_total;
END
$$;

CREATE OR REPLACE FUNCTION routing.integrity_report(p_as_of timestamptz DEFAULT now())
RETURNS TABLE (metric text, value bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
-- A dozen small index scans: compiling them costs more than it saves.
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    PERFORM routing._require_timestamp('integrity_report', 'p_as_of', p_as_of);

    -- Each subquery repeats the predicate of the partial index that answers it.
    RETURN QUERY
    WITH orphan_judge AS (
        -- The orphans' judge state, read once: it corrects two of the counts below.
        -- Index-only on routing_outcomes_orphans_judge (change orphan_judge_index), which
        -- holds just the orphans with these two columns; without it the plan took
        -- routing_outcomes_inference (inference_id IS NULL: every rejected and refused
        -- outcome of history too) and read the heap of each, growing with the ledger.
        SELECT count(*) FILTER (WHERE o.outcome_status = 'succeeded' AND o.judge_status IS NOT NULL) AS succeeded_judged,
               count(*) FILTER (WHERE o.judge_status = 'unlabeled') AS unlabeled
          FROM routing.routing_outcomes o
         WHERE o.inference_id IS NULL AND o.chosen_model_slug IS NOT NULL
           AND o.decision_rule <> 'failed_pre_dispatch'
    ),
    v (metric, value) AS (
        VALUES
        ('orphan_outcomes', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.inference_id IS NULL AND o.chosen_model_slug IS NOT NULL
               AND o.decision_rule <> 'failed_pre_dispatch')),
        ('orphan_outcomes_24h', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.inference_id IS NULL AND o.chosen_model_slug IS NOT NULL
               AND o.decision_rule <> 'failed_pre_dispatch'
               AND o.created_at > p_as_of - interval '24 hours' AND o.created_at <= p_as_of)),
        ('stuck_routed_1h', (
            SELECT count(*) FROM routing.inferences i
             WHERE i.status = 'routed'
               AND routing._routed_past_due(i.created_at, i.not_before, i.heartbeat_at,
                                            p_as_of - interval '1 hour'))),
        -- Driven by the few routed attempts; the outcome found by its primary key, or for
        -- history that never wrote inferences.outcome_id, by routing_outcomes_inference.
        -- Two disjoint counts, not one OR: an OR of EXISTS is planned as hashed subplans
        -- that read all of routing_outcomes. The first is a scalar subquery (the primary
        -- key gives at most one row), not EXISTS: a semi-join lets the planner hash a
        -- sequential scan of routing_outcomes on a small ledger, and a subplan is one
        -- key look-up per routed attempt at any size.
        ('terminal_outcome_with_routed_inference', (
            SELECT count(*) FROM routing.inferences i
             WHERE i.status = 'routed'
               AND (SELECT o.outcome_status FROM routing.routing_outcomes o
                     WHERE o.id = i.outcome_id) IS NOT NULL)
          + (SELECT count(*) FROM routing.inferences i
              WHERE i.status = 'routed' AND i.outcome_id IS NULL
                AND EXISTS (SELECT FROM routing.routing_outcomes o
                             WHERE o.inference_id = i.id AND o.outcome_status IS NOT NULL))),
        ('outcomes_without_terminal_state_1h', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.outcome_status IS NULL AND o.created_at < p_as_of - interval '1 hour')),
        ('in_flight', (
            SELECT count(*) FROM routing.routing_outcomes o WHERE o.outcome_status IS NULL)),
        ('routed_inferences', (
            SELECT count(*) FROM routing.inferences i WHERE i.status = 'routed')),
        ('unowned_inferences', (
            SELECT count(*) FROM routing.inferences i WHERE i.outcome_id IS NULL)),
        ('unowned_inferences_linked_by_outcome', (
            SELECT count(*) FROM routing.inferences i
             WHERE i.outcome_id IS NULL
               AND EXISTS (SELECT FROM routing.routing_outcomes o WHERE o.inference_id = i.id))),
        -- Two disjoint counts: never given a judge status, and orphans that were.
        ('succeeded_not_judgeable', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.outcome_status = 'succeeded' AND o.judge_status IS NULL)
          + (SELECT j.succeeded_judged FROM orphan_judge j)),
        -- The rows of routing.judge_queue. judge_status is set only on succeeded outcomes
        -- (CHECK outcome_judged_only_when_succeeded), and an unlabeled one without an
        -- inference is an orphan: two small index-only counts instead of a heap read of
        -- the whole queue.
        ('judge_queue', (
            SELECT count(*) FROM routing.routing_outcomes o WHERE o.judge_status = 'unlabeled')
          - (SELECT j.unlabeled FROM orphan_judge j)),
        ('judge_claimed', (
            SELECT count(*) FROM routing.routing_outcomes o WHERE o.judge_status = 'claimed')),
        ('judge_claims_expired', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.judge_status = 'claimed' AND o.judge_claim_expires_at <= p_as_of)),
        ('streams_interrupted_24h', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.outcome_status = 'failed_stream_interrupted'
               AND o.completed_at > p_as_of - interval '24 hours' AND o.completed_at <= p_as_of)),
        ('requests_cancelled_24h', (
            SELECT count(*) FROM routing.routing_outcomes o
             WHERE o.outcome_status = 'cancelled'
               AND o.completed_at > p_as_of - interval '24 hours' AND o.completed_at <= p_as_of)),
        -- The running daily spend against the ledger's own sum.
        ('budget_spend_drift', routing._budget_drift(p_as_of)),
        ('rows_in_default_partition', routing._rows_in_default_partition()),
        -- On the partial index inferences_provider_cost.
        ('cost_mismatch_24h', (
            SELECT count(*) FROM routing.inferences i
             WHERE i.provider_cost_usd IS NOT NULL
               AND i.completed_at > p_as_of - interval '24 hours' AND i.completed_at <= p_as_of
               AND abs(coalesce(i.cost_usd, 0) - i.provider_cost_usd) > 0.01 * i.provider_cost_usd
               AND abs(coalesce(i.cost_usd, 0) - i.provider_cost_usd) > 0.000001))
    )
    SELECT v.metric, v.value
      FROM v JOIN routing.integrity_metrics m ON m.metric = v.metric
     ORDER BY m.ordinal;
END
$$;

COMMENT ON FUNCTION routing.integrity_report(timestamptz) IS
    'One row per metric, always the same metrics in the same order (routing.integrity_metrics says which are violations and what each counts): orphan_outcomes, orphan_outcomes_24h, stuck_routed_1h, terminal_outcome_with_routed_inference, outcomes_without_terminal_state_1h (violations: 0 on a healthy ledger), in_flight, routed_inferences, unowned_inferences, unowned_inferences_linked_by_outcome, succeeded_not_judgeable, judge_queue, judge_claimed, judge_claims_expired, streams_interrupted_24h, requests_cancelled_24h (gauges), budget_spend_drift and rows_in_default_partition (violations of the daily cap''s counters and of partition upkeep), cost_mismatch_24h (gauge: computed and provider-reported costs apart). Windows end at p_as_of. Read-only; every count is answered by a partial index, so its cost follows the anomalies, not the ledger (the full link check is the view routing.link_mismatches). 22023 on a bad p_as_of (NULL, or not a finite timestamp in 1970..9999).';

-- Dispatched outcomes with no attempt: the rows behind orphan_outcomes.
CREATE OR REPLACE VIEW routing.orphan_outcomes AS
SELECT o.id, o.request_id, o.agent_id, o.tenant_id, o.task_type, o.decision_rule,
       o.chosen_model_slug, o.outcome_status, o.cost_actual_usd, o.attempts,
       o.judge_status, o.created_at, o.completed_at
  FROM routing.routing_outcomes o
 WHERE o.inference_id IS NULL AND o.chosen_model_slug IS NOT NULL
   AND o.decision_rule <> 'failed_pre_dispatch';
COMMENT ON VIEW routing.orphan_outcomes IS
    'Outcomes whose model was dispatched but that name no inference (metric orphan_outcomes): history of the older write path. See routing.repair_orphans.';

-- Attempts routed for over an hour after they were due or last heard of: the rows behind
-- stuck_routed_1h, and what reap_stuck_inferences closes with its default threshold.
-- (heartbeat_at comes last: CREATE OR REPLACE VIEW only appends columns.)
CREATE OR REPLACE VIEW routing.stuck_inferences AS
SELECT i.id, i.outcome_id, i.attempt_no, i.agent_id, i.model_slug,
       i.created_at, i.not_before,
       greatest(i.created_at, i.not_before, i.heartbeat_at) AS due_at,
       now() - greatest(i.created_at, i.not_before, i.heartbeat_at) AS routed_for,
       o.outcome_status,
       i.heartbeat_at
  FROM routing.inferences i
  LEFT JOIN routing.routing_outcomes o ON o.id = i.outcome_id
 WHERE i.status = 'routed'
   AND routing._routed_past_due(i.created_at, i.not_before, i.heartbeat_at, now() - interval '1 hour');
COMMENT ON VIEW routing.stuck_inferences IS
    'Attempts still routed more than 1 hour after they were due or last heard of (due_at: the latest of created_at, not_before and heartbeat_at), with the outcome they belong to (NULL: history from the older write path). Metric stuck_routed_1h; routing.reap_stuck_inferences closes them.';

-- Every link checked both ways: reads both tables in full (about a second per
-- million outcomes), so it is not part of integrity_report. Only a direct table write
-- can put a row here: the functions always write both sides together.
CREATE OR REPLACE VIEW routing.link_mismatches AS
SELECT o.id AS outcome_id, o.inference_id, i.outcome_id AS inference_outcome_id,
       o.outcome_status, i.status AS inference_status
  FROM routing.routing_outcomes o
  JOIN routing.inferences i ON i.id = o.inference_id
 WHERE i.outcome_id <> o.id;
COMMENT ON VIEW routing.link_mismatches IS
    'Outcomes pointing at an inference that belongs to another outcome (inferences.outcome_id set and different). Should be empty; only a direct table write can fill it. Reads both tables in full: not part of integrity_report.';

REVOKE ALL ON routing.integrity_metrics FROM PUBLIC;
GRANT SELECT ON routing.integrity_metrics TO routing_ops, routing_readonly;
REVOKE ALL ON FUNCTION routing._rows_in_default_partition() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.integrity_report(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.integrity_report(timestamptz) TO routing_ops;
REVOKE ALL ON routing.orphan_outcomes, routing.stuck_inferences, routing.link_mismatches FROM PUBLIC;
GRANT SELECT ON routing.orphan_outcomes, routing.stuck_inferences, routing.link_mismatches TO routing_readonly;

COMMIT;
