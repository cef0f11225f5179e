-- Deploy routing_ledger:reaper to pg
-- requires: reaper@v0.1.0
-- requires: inference_streaming
-- requires: write_path
-- requires: argument_checks
-- requires: budget_ledger
--
-- The reaper closes what nobody will ever close: an attempt still routed long after it
-- was due (the gateway died, the process was killed between dispatch and record, or it
-- is history from the older write path, where a 429 between the outcome write and the
-- back-fill left attempts routed forever). A rescued attempt is marked failed with a
-- reason a human can read, never silently requeued: the provider may have done the
-- work, and only the caller knows whether to retry.
--
-- Threshold and "now" are parameters (testable without sleeping). Age counts from the
-- latest of created_at, not_before and heartbeat_at (routing._routed_past_due), so a
-- retry scheduled after a long Retry-After is not reaped before it was even due, and a
-- stream that heartbeats is never reaped while one that stopped is, once the threshold
-- has passed since its last heartbeat (the client heartbeats every heartbeat_s, 10 s by
-- default: a threshold of a few minutes is safe, the default hour very safe). A reaped
-- attempt whose partial output is known from its heartbeats keeps that count and its
-- estimated cost (input + partial output at catalog prices), as fail_inference would.
-- Both bounds are checked first: p_older_than 0..100 years, p_as_of 1970..9999, so
-- p_as_of - p_older_than always fits (no 22008). Work is done in batches of 1000, on
-- the index inferences_routed_age (by greatest(created_at, not_before), the heartbeat
-- a filter: heartbeat_at is in no index, so a heartbeat stays a cheap HOT update),
-- under FOR UPDATE SKIP LOCKED, attempts before their
-- outcomes (the write path's lock order): a live completion or failure holding an
-- attempt is skipped, not waited for, a second reaper takes disjoint rows, and nobody
-- deadlocks. Whoever loses a race finds the row terminal and gets 55000.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing.reap_stuck_inferences(
    p_older_than interval    DEFAULT '1 hour',
    p_as_of      timestamptz DEFAULT now()
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c_batch  CONSTANT int := 1000;
    v_cutoff timestamptz;
    v_now    timestamptz := clock_timestamp();
    v_ids    bigint[];
    v_outs   bigint[];
    v_pair_ids bigint[];
    v_n      bigint;
    v_closed bigint := 0;
BEGIN
    PERFORM routing._require_interval('reap_stuck_inferences', 'p_older_than', p_older_than);
    PERFORM routing._require_timestamp('reap_stuck_inferences', 'p_as_of', p_as_of);
    v_cutoff := p_as_of - p_older_than;

    -- 1. Attempts still routed past the threshold, and the outcomes waiting on them.
    LOOP
        SELECT array_agg(s.id) INTO v_ids
          FROM (SELECT i.id
                  FROM routing.inferences i
                 WHERE i.status = 'routed'
                   AND routing._routed_past_due(i.created_at, i.not_before, i.heartbeat_at, v_cutoff)
                 ORDER BY greatest(i.created_at, i.not_before), i.id
                 LIMIT c_batch
                   FOR UPDATE SKIP LOCKED) s;
        EXIT WHEN v_ids IS NULL;

        -- Then their in-flight outcomes. Nobody holds one of these without first holding
        -- its routed attempt, which is ours now, so this does not wait in practice.
        -- History may link one way only (outcome -> attempt, the attempt's outcome_id
        -- NULL). The (outcome, attempt) pairs come from two index lookups (primary key,
        -- routing_outcomes_inference), not one OR, which would be planned as a scan of
        -- every unowned attempt per outcome.
        SELECT array_agg(x.outcome_id ORDER BY x.outcome_id), array_agg(x.inference_id ORDER BY x.outcome_id)
          INTO v_outs, v_pair_ids
          FROM (SELECT i.outcome_id, i.id AS inference_id
                  FROM routing.inferences i
                 WHERE i.id = ANY (v_ids) AND i.outcome_id IS NOT NULL
                UNION ALL
                SELECT o.id, o.inference_id
                  FROM routing.routing_outcomes o
                  JOIN routing.inferences i ON i.id = o.inference_id AND i.outcome_id IS NULL
                 WHERE o.inference_id = ANY (v_ids)) x;
        PERFORM FROM routing.routing_outcomes o
          WHERE o.id = ANY (v_outs) AND o.outcome_status IS NULL
          ORDER BY o.id
            FOR UPDATE;
        -- Their budget rows, in one order (two reapers cannot deadlock).
        PERFORM routing._lock_budget_rows(v_outs);

        UPDATE routing.inferences i
           SET status = 'failed',
               error_code = 'abandoned',
               error_message = format(
                   'abandoned by the reaper: still routed %s after it was %s (%s), over the %s threshold;'
                   ' no completion or failure was ever recorded, so a late one is refused.'
                   ' The provider may nevertheless have done (and billed) the work.',
                   justify_hours(date_trunc('second', p_as_of - greatest(i.created_at, i.not_before, i.heartbeat_at))),
                   CASE WHEN i.heartbeat_at > greatest(i.created_at, i.not_before)
                        THEN 'last heard of' ELSE 'due' END,
                   to_char(greatest(i.created_at, i.not_before, i.heartbeat_at) AT TIME ZONE 'UTC',
                           'YYYY-MM-DD HH24:MI:SS "UTC"'),
                   p_older_than),
               usage_source = CASE WHEN i.output_tokens IS NOT NULL
                                   THEN coalesce(i.usage_source, 'estimated') END,
               -- At the rates in force at the attempt's created_at
               cost_usd = routing._attempt_cost(i.model_slug, i.created_at, i.input_tokens, i.output_tokens),
               completed_at = v_now
         WHERE i.id = ANY (v_ids);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_closed := v_closed + v_n;

        -- An outcome ends with its newest attempt; one whose newest attempt is another
        -- (history) is left to pass 2 or to a human. A one-way link is completed, since
        -- an outcome that names a model must name its attempt.
        UPDATE routing.routing_outcomes o
           SET outcome_status  = 'failed_abandoned',
               completed_at    = v_now,
               inference_id    = coalesce(o.inference_id, p.inference_id),
               cost_actual_usd = i.cost_usd
          FROM unnest(v_outs, v_pair_ids) AS p (outcome_id, inference_id)
          JOIN routing.inferences i ON i.id = p.inference_id
         WHERE o.id = p.outcome_id
           AND o.outcome_status IS NULL
           AND (o.inference_id = p.inference_id OR o.inference_id IS NULL);

        EXIT WHEN cardinality(v_ids) < c_batch;
    END LOOP;

    -- 2. Outcomes in flight past the threshold whose newest attempt has already failed
    -- (history: e.g. an attempt reaped while unowned, re-linked afterwards by
    -- repair_orphans). Nothing will dispatch them again: they give up, with the status
    -- the retry policy gives to that attempt's error. SKIP LOCKED on both rows: this
    -- never waits, so it cannot deadlock whatever order the rows are locked in.
    LOOP
        SELECT array_agg(s.id) INTO v_ids
          FROM (SELECT o.id
                  FROM routing.routing_outcomes o
                  JOIN routing.inferences i ON i.id = o.inference_id
                 WHERE o.outcome_status IS NULL
                   AND o.created_at < v_cutoff
                   AND i.status = 'failed'
                 ORDER BY o.created_at, o.id
                 LIMIT c_batch
                   FOR UPDATE OF i, o SKIP LOCKED) s;
        EXIT WHEN v_ids IS NULL;
        -- Their budget rows, in one order (two reapers cannot deadlock).
        PERFORM routing._lock_budget_rows(v_ids);

        UPDATE routing.routing_outcomes o
           SET outcome_status = coalesce(p.give_up_status, 'failed_abandoned'),
               completed_at   = v_now
          FROM routing.inferences i
          LEFT JOIN routing.retry_policy p ON p.error_code = i.error_code
         WHERE o.id = ANY (v_ids)
           AND i.id = o.inference_id
           AND o.outcome_status IS NULL
           AND i.status = 'failed';
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_closed := v_closed + v_n;

        EXIT WHEN cardinality(v_ids) < c_batch;
    END LOOP;

    RETURN v_closed;
END
$$;

COMMENT ON FUNCTION routing.reap_stuck_inferences(interval, timestamptz) IS
    'Closes attempts still routed p_older_than after they were due or last heard of (the latest of created_at, not_before and heartbeat_at, so a scheduled retry is not reaped early and a heartbeating stream never): status failed, error_code abandoned, an error_message naming the age, the due time and the threshold, completed_at, and, when heartbeats reported partial output, that count and its estimated cost. Their in-flight outcomes become failed_abandoned; attempts from the older write path that belong to no outcome are closed too. Then closes outcomes in flight past the threshold whose newest attempt had already failed (history), with the retry policy''s give-up status for that error. Batches of 1000, oldest first, FOR UPDATE SKIP LOCKED, attempts locked before outcomes: safe beside live traffic and beside another reaper (each row is closed by exactly one of them). A completion or failure that arrives afterwards is refused by complete_decision / fail_inference with 55000, although the provider may have done (and billed) the work. Returns the number of attempts reaped plus outcomes closed in the second pass. 22023 on a bad argument: p_older_than NULL or outside 0..100 years, p_as_of NULL or not a finite timestamp in 1970..9999.';

REVOKE ALL ON FUNCTION routing.reap_stuck_inferences(interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.reap_stuck_inferences(interval, timestamptz) TO routing_ops;

COMMIT;
