-- Revert routing_ledger:judge_queue from pg
--
-- Back to judge_queue@v0.3.0: its deploy script, unchanged (same signatures, same objects).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- The contract's queue: unclaimed, judgeable outcomes. Expired claims are not listed
-- (they are 'claimed'); claim_judge_batch takes them back first.
CREATE OR REPLACE VIEW routing.judge_queue AS
SELECT o.id, o.task_type, o.agent_id, o.tenant_id, o.chosen_model_slug, o.inference_id,
       o.created_at, o.completed_at
  FROM routing.routing_outcomes o
 WHERE o.judge_status = 'unlabeled'
   AND o.inference_id IS NOT NULL
   AND o.outcome_status = 'succeeded';
COMMENT ON VIEW routing.judge_queue IS
    'Succeeded outcomes waiting for the judge, one row per outcome (judge_status unlabeled, linked to their inference). Claimed with routing.claim_judge_batch, labelled with routing.record_judgement.';

-- The claim, with "now" as a parameter so leases are testable without sleeping; the
-- public claim_judge_batch(p_worker, p_limit) is this at now().
CREATE OR REPLACE FUNCTION routing._claim_judge_batch(
    p_worker text,
    p_limit  int,
    p_as_of  timestamptz
) RETURNS TABLE (outcome_id bigint, inference_id bigint, task_type text, chosen_model_slug text,
                 model_slug text, request_payload jsonb, response_payload jsonb,
                 claim_expires_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_expires timestamptz;
    v_ids     bigint[];
    v_more    bigint[];
BEGIN
    PERFORM routing._require_text('claim_judge_batch', 'p_worker', p_worker, 255);
    PERFORM routing._require_int('claim_judge_batch', 'p_limit', p_limit, 1, 10000);
    PERFORM routing._require_timestamp('claim_judge_batch', 'p_as_of', p_as_of);

    SELECT p_as_of + s.judge_lease INTO v_expires FROM routing.settings s;

    -- Claims whose lease ended first (their worker died or gave up), oldest first, on
    -- the index routing_outcomes_judge_claimed.
    SELECT array_agg(s.id) INTO v_ids
      FROM (SELECT o.id FROM routing.routing_outcomes o
             WHERE o.judge_status = 'claimed' AND o.judge_claim_expires_at <= p_as_of
             ORDER BY o.judge_claim_expires_at, o.id
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED) s;
    v_ids := coalesce(v_ids, '{}');

    -- Then the queue in id order (index routing_outcomes_judge_unlabeled): first come,
    -- first judged.
    IF cardinality(v_ids) < p_limit THEN
        SELECT array_agg(s.id) INTO v_more
          FROM (SELECT o.id FROM routing.routing_outcomes o
                 WHERE o.judge_status = 'unlabeled'
                   AND o.inference_id IS NOT NULL
                   AND o.outcome_status = 'succeeded'
                 ORDER BY o.id
                 LIMIT p_limit - cardinality(v_ids)
                   FOR UPDATE SKIP LOCKED) s;
        v_ids := v_ids || coalesce(v_more, '{}');
    END IF;

    UPDATE routing.routing_outcomes o
       SET judge_status = 'claimed', judge_claimed_by = p_worker, judge_claim_expires_at = v_expires
     WHERE o.id = ANY (v_ids);

    RETURN QUERY
    SELECT o.id, o.inference_id, o.task_type, o.chosen_model_slug, i.model_slug,
           i.request_payload, i.response_payload, o.judge_claim_expires_at
      FROM routing.routing_outcomes o
      JOIN routing.inferences i ON i.id = o.inference_id
     WHERE o.id = ANY (v_ids)
     ORDER BY o.id;
END
$$;

CREATE OR REPLACE FUNCTION routing.claim_judge_batch(
    p_worker text,
    p_limit  int
) RETURNS TABLE (outcome_id bigint, inference_id bigint, task_type text, chosen_model_slug text,
                 model_slug text, request_payload jsonb, response_payload jsonb,
                 claim_expires_at timestamptz)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT * FROM routing._claim_judge_batch(p_worker, p_limit, now())
$$;

CREATE OR REPLACE FUNCTION routing.record_judgement(
    p_outcome_id  bigint,
    p_status      text,
    p_score       numeric,
    p_rationale   text,
    p_judge_model text
) RETURNS TABLE (outcome_id bigint, judge_status text, judge_score numeric, model_slug text,
                 task_type text, judged_samples bigint, learned_quality numeric)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_out       routing.routing_outcomes;
    v_model     text;
    v_half_life interval;
BEGIN
    PERFORM routing._require_not_null('record_judgement', 'p_outcome_id', p_outcome_id);
    -- The verdicts a judge records (judge_status minus the queue's own unlabeled/claimed).
    PERFORM routing._require_member('record_judgement', 'p_status', p_status,
                                    ARRAY['labeled', 'error', 'cannot_evaluate']);
    IF p_status = 'labeled' THEN
        PERFORM routing._require_numeric('record_judgement', 'p_score', p_score, 1, 5);
    ELSIF p_score IS NOT NULL THEN
        RAISE EXCEPTION 'record_judgement: p_score must be NULL when p_status is %', p_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Free text, NULL and '' allowed as in v0.1.0: only its length is bounded.
    IF pg_catalog.length(p_rationale) > 10000 THEN
        RAISE EXCEPTION 'record_judgement: p_rationale must be at most 10000 characters, got %', pg_catalog.length(p_rationale)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM routing._require_text('record_judgement', 'p_judge_model', p_judge_model, 255);

    SELECT * INTO v_out FROM routing.routing_outcomes o WHERE o.id = p_outcome_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'record_judgement: unknown outcome %', p_outcome_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT i.model_slug INTO v_model FROM routing.inferences i WHERE i.id = v_out.inference_id;

    IF v_out.judge_status IN ('labeled', 'error', 'cannot_evaluate') THEN
        IF (v_out.judge_status, v_out.judge_score, v_out.judge_rationale, v_out.judge_model)
           IS NOT DISTINCT FROM (p_status, p_score, p_rationale, p_judge_model)
        THEN
            -- Repeating the call (a retry after a lost reply): the label is counted once.
            RETURN QUERY
            SELECT v_out.id, v_out.judge_status, v_out.judge_score, v_model, v_out.task_type,
                   q.judged_samples, q.learned_quality
              FROM (SELECT) AS one
              LEFT JOIN routing.model_task_quality q
                     ON q.model_slug = v_model AND q.task_type = v_out.task_type;
            RETURN;
        END IF;
        RAISE EXCEPTION 'record_judgement: outcome % is already judged (%), it cannot be judged again',
                        p_outcome_id, v_out.judge_status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a claim whose lease ran out may have been taken and recorded by another worker; the first recording wins';
    END IF;
    IF v_out.judge_status IS NULL OR v_out.inference_id IS NULL THEN
        RAISE EXCEPTION 'record_judgement: outcome % is not in the judge queue (outcome_status %, judge_status %)',
                        p_outcome_id, coalesce(v_out.outcome_status, 'NULL: in flight'), coalesce(v_out.judge_status, 'NULL')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'only succeeded outcomes linked to their inference are judged';
    END IF;

    -- unlabeled or claimed (by anyone, lease expired or not): the first recording wins.
    UPDATE routing.routing_outcomes o
       SET judge_status = p_status, judge_score = p_score, judge_rationale = p_rationale,
           judge_model = p_judge_model, judge_labeled_at = clock_timestamp(),
           judge_claimed_by = NULL, judge_claim_expires_at = NULL
     WHERE o.id = p_outcome_id;

    IF p_status = 'labeled' THEN
        SELECT s.quality_half_life INTO v_half_life FROM routing.settings s;
        INSERT INTO routing.model_task_quality AS q
               (model_slug, task_type, judged_samples, score_sum, updated_at, label_weight, weighted_score, weights_at)
        VALUES (v_model, v_out.task_type, 1, p_score, clock_timestamp(),
                1, ((p_score - 1) / 4)::double precision, v_out.created_at)
        ON CONFLICT (model_slug, task_type) DO UPDATE
           SET judged_samples = q.judged_samples + 1,
               score_sum      = q.score_sum + excluded.score_sum,
               updated_at     = excluded.updated_at,
               -- The label counts at its outcome's time (see the header).
               label_weight   = CASE WHEN q.weights_at IS NULL THEN 1
                                     WHEN excluded.weights_at >= q.weights_at
                                     THEN q.label_weight * routing._quality_decay(q.weights_at, excluded.weights_at, v_half_life) + 1
                                     ELSE q.label_weight + routing._quality_decay(excluded.weights_at, q.weights_at, v_half_life)
                                END,
               weighted_score = CASE WHEN q.weights_at IS NULL THEN excluded.weighted_score
                                     WHEN excluded.weights_at >= q.weights_at
                                     THEN q.weighted_score * routing._quality_decay(q.weights_at, excluded.weights_at, v_half_life)
                                          + excluded.weighted_score
                                     ELSE q.weighted_score
                                          + excluded.weighted_score * routing._quality_decay(excluded.weights_at, q.weights_at, v_half_life)
                                END,
               weights_at     = greatest(q.weights_at, excluded.weights_at);
    END IF;

    RETURN QUERY
    SELECT p_outcome_id, p_status, p_score, v_model, v_out.task_type, q.judged_samples, q.learned_quality
      FROM (SELECT) AS one
      LEFT JOIN routing.model_task_quality q ON q.model_slug = v_model AND q.task_type = v_out.task_type;
END
$$;

COMMENT ON FUNCTION routing.claim_judge_batch(text, int) IS
    'Claims up to p_limit outcomes for judge worker p_worker until now() + routing.settings.judge_lease: first claims whose lease has ended (their worker died), then routing.judge_queue in id order, under FOR UPDATE SKIP LOCKED (two workers never receive the same outcome). Returns what a judge needs: ids, task type, chosen and actual model, request and response payloads, the claim''s expiry. 22023 (checked first) on a p_worker that is empty or over 255 characters, or a p_limit outside 1..10000.';
COMMENT ON FUNCTION routing.record_judgement(bigint, text, numeric, text, text) IS
    'Records the judge''s verdict on an unlabeled or claimed outcome (a claim is not required; the first recording wins, even over a claim whose lease ran out): labeled with a score 1..5, or error / cannot_evaluate without one. A label (weight 1 at its outcome''s created_at, halving every routing.settings.quality_half_life, late labels included) is added in constant time to routing.model_task_quality''s decayed sums for the final attempt''s model and the task type, which the router''s estimate reads from the first label on; judged_samples and learned_quality are the cumulative count and plain mean. Repeating the same verdict returns it and counts nothing twice; a different verdict on a judged outcome raises 55000, as does judging an outcome not in the queue. 22023 (checked first) on a bad argument: p_status not a verdict, p_score not finite 1..5 for a label (NULL otherwise), p_rationale over 10000 characters, p_judge_model empty or over 255; P0002 on an unknown outcome.';

REVOKE ALL ON routing.judge_queue FROM PUBLIC;
GRANT SELECT ON routing.judge_queue TO routing_judge, routing_readonly;
REVOKE ALL ON FUNCTION routing._claim_judge_batch(text, int, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.claim_judge_batch(text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.record_judgement(bigint, text, numeric, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.claim_judge_batch(text, int) TO routing_judge;
GRANT EXECUTE ON FUNCTION routing.record_judgement(bigint, text, numeric, text, text) TO routing_judge;

-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._outcome_awaits_judge(text, bigint, text);

COMMIT;
