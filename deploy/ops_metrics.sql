-- Deploy routing_ledger:ops_metrics to pg
-- requires: ops_metrics@v0.3.0
-- requires: judge_queue
--
-- ops_metrics' judge_oldest_waiting_age finds the queue's head with
-- routing._outcome_awaits_judge (change judge_queue), the one definition of an outcome
-- waiting for the judge, inlined, so the partial index routing_outcomes_judge_unlabeled
-- still answers. Same signature, grants and comment (CREATE OR REPLACE); the rest of the
-- change, and its reasoning, is ops_metrics@v0.3.0's.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing.ops_metrics(
    p_window interval    DEFAULT '5 minutes',
    p_as_of  timestamptz DEFAULT now()
) RETURNS TABLE (metric text, labels jsonb, value double precision)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    PERFORM routing._require_interval('ops_metrics', 'p_window', p_window, interval '1 second', interval '1 day');
    PERFORM routing._require_timestamp('ops_metrics', 'p_as_of', p_as_of);

    RETURN QUERY
    SELECT 'integrity', jsonb_build_object('metric', r.metric, 'kind', m.kind), r.value::float8
      FROM routing.integrity_report(p_as_of) r
      JOIN routing.integrity_metrics m ON m.metric = r.metric;

    -- The window's outcomes, read once (index routing_outcomes_created).
    RETURN QUERY
    WITH recent AS (
        SELECT coalesce(o.outcome_status, 'in_flight') AS status,
               coalesce(o.chosen_model_slug, '') AS model, o.attempts
          FROM routing.routing_outcomes o
         WHERE o.created_at > p_as_of - p_window AND o.created_at <= p_as_of
    ), g AS (
        SELECT r.status, r.model, r.attempts, count(*) AS n, avg(r.attempts) FILTER (WHERE r.attempts > 0) AS mean,
               GROUPING(r.status, r.model, r.attempts) AS grp
          FROM recent r
         GROUP BY GROUPING SETS ((r.status, r.model), (r.attempts), ())
    )
    SELECT 'outcomes_recent', jsonb_build_object('status', g.status, 'model', g.model), g.n::float8
      FROM g WHERE g.grp = 1
    UNION ALL
    SELECT 'outcomes_by_attempts_recent', jsonb_build_object('attempts', g.attempts::text), g.n::float8
      FROM g WHERE g.grp = 6 AND g.attempts > 0
    UNION ALL
    SELECT 'attempts_per_outcome_recent', '{}'::jsonb, g.mean::float8
      FROM g WHERE g.grp = 7 AND g.mean IS NOT NULL;

    RETURN QUERY
    SELECT 'judge_oldest_waiting_age', '{}'::jsonb,
           coalesce(greatest(extract(epoch FROM p_as_of - least(
               -- The queue's head in id order (routing_outcomes_judge_unlabeled).
               (SELECT o.completed_at FROM routing.routing_outcomes o
                 WHERE routing._outcome_awaits_judge(o.judge_status, o.inference_id, o.outcome_status)
                 ORDER BY o.id LIMIT 1),
               -- Claims whose lease ended (routing_outcomes_judge_claimed): few.
               (SELECT min(o.completed_at) FROM routing.routing_outcomes o
                 WHERE o.judge_status = 'claimed' AND o.judge_claim_expires_at <= p_as_of))), 0), 0)::float8;

    RETURN QUERY
    SELECT 'ttft_recent', jsonb_build_object('model', m.slug, 'quantile', q.quantile::text), q.ms / 1000.0
      FROM routing.models m
     CROSS JOIN LATERAL (
            SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY i.ttft_ms) AS ms
              FROM routing.inferences i
             WHERE i.model_slug = m.slug AND i.created_at > p_as_of - p_window AND i.created_at <= p_as_of
               AND i.ttft_ms IS NOT NULL) t
     CROSS JOIN LATERAL unnest(ARRAY[0.5, 0.95], t.ms) AS q (quantile, ms)
     WHERE t.ms IS NOT NULL
     ORDER BY m.slug, q.quantile;

    RETURN QUERY
    SELECT 'cooldowns_in_force', '{}'::jsonb, count(*)::float8
      FROM routing.model_cooldowns c WHERE c.cooling_until > p_as_of;
    RETURN QUERY
    SELECT 'cooldown_remaining', jsonb_build_object('model', c.model_slug),
           extract(epoch FROM c.cooling_until - p_as_of)::float8
      FROM routing.model_cooldowns c WHERE c.cooling_until > p_as_of
     ORDER BY c.model_slug;
END
$$;

COMMIT;
