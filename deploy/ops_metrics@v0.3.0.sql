-- Deploy routing_ledger:ops_metrics to pg
-- requires: integrity
-- requires: judge_queue
-- requires: router
-- requires: argument_checks
-- requires: inference_streaming
--
-- What a Prometheus scrape reads, in one call: the integrity report (each metric with
-- its kind) and the write path's own figures over a recent window. A scrape comes every
-- few seconds for as long as the ledger lives, so every figure is driven by an index and
-- costs what the window holds, not what the ledger holds: the window's outcomes come off
-- routing_outcomes_created (a range of created_at), the judge queue's head off the
-- partial indexes routing_outcomes_judge_unlabeled and routing_outcomes_judge_claimed,
-- cooldowns from the one-row-per-model routing.model_cooldowns, time to first token per
-- model off inferences_model_created (a range of created_at under each model). No index is added: rows
-- written in the last minutes sit on pages vacuum has not marked all-visible yet, so a
-- covering index would read the heap anyway.
--
-- routing.describe_metrics says what each metric is (source, kind, unit, labels, text),
-- so an exporter, a doctor and the reference documentation take it from the database
-- instead of a list of their own. routing_readonly may call both: a monitoring role
-- needs no operator rights.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.ops_metric_families (
    metric      text PRIMARY KEY,
    ordinal     int    NOT NULL,
    unit        text   NOT NULL CHECK (unit IN ('', 'seconds')),
    labels      text[] NOT NULL,
    description text   NOT NULL
);
COMMENT ON TABLE routing.ops_metric_families IS
    'The figures routing.ops_metrics returns besides the integrity report, in its order: unit, label names, and what each measures.';

INSERT INTO routing.ops_metric_families (metric, ordinal, unit, labels, description) VALUES
    ('integrity', 1, '', ARRAY['metric', 'kind'],
     'routing.integrity_report at p_as_of, one sample per metric; kind violation (0 on a healthy ledger) or info, from routing.integrity_metrics.'),
    ('outcomes_recent', 2, '', ARRAY['status', 'model'],
     'Outcomes created in the window ending at p_as_of, by outcome_status (in_flight while it has none) and chosen model (empty when none was chosen).'),
    ('outcomes_by_attempts_recent', 3, '', ARRAY['attempts'],
     'Dispatched outcomes created in the window, by their number of attempts (retries and failovers included).'),
    ('attempts_per_outcome_recent', 4, '', ARRAY[]::text[],
     'Mean attempts per dispatched outcome created in the window (absent when there is none).'),
    ('judge_oldest_waiting_age', 5, 'seconds', ARRAY[]::text[],
     'Age at p_as_of of the oldest outcome waiting for a verdict (in routing.judge_queue, or claimed with an expired lease), counted from its completion; 0 when none waits.'),
    ('cooldowns_in_force', 6, '', ARRAY[]::text[],
     'Models cooling down at p_as_of after a 429 (routing.model_cooldowns); the router routes around them.'),
    ('cooldown_remaining', 7, 'seconds', ARRAY['model'],
     'Time left at p_as_of on each cooldown in force.'),
    ('ttft_recent', 8, 'seconds', ARRAY['model', 'quantile'],
     'Time to first token (inferences.ttft_ms, as mark_first_token recorded it) of the streamed attempts created in the window, by model that answered: quantiles 0.5 and 0.95 (absent for a model with none).')
ON CONFLICT (metric) DO UPDATE
   SET ordinal = excluded.ordinal, unit = excluded.unit, labels = excluded.labels,
       description = excluded.description;

CREATE OR REPLACE FUNCTION routing.describe_metrics()
RETURNS TABLE (metric text, source text, kind text, unit text, labels text[], description text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT d.metric, d.source, d.kind, d.unit, d.labels, d.description
      FROM (SELECT m.metric, 'integrity_report' AS source, m.kind, '' AS unit,
                   ARRAY[]::text[] AS labels, m.description, 1 AS part, m.ordinal
              FROM routing.integrity_metrics m
            UNION ALL
            SELECT f.metric, 'ops_metrics', 'info', f.unit, f.labels, f.description, 2, f.ordinal
              FROM routing.ops_metric_families f) d
     ORDER BY d.part, d.ordinal
$$;

COMMENT ON FUNCTION routing.describe_metrics() IS
    'What each reported metric is: source (integrity_report or ops_metrics), kind (violation: 0 on a healthy ledger; info), unit, label names and description, integrity metrics first, each in its function''s order. Read-only.';

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
                 WHERE o.judge_status = 'unlabeled' AND o.inference_id IS NOT NULL
                   AND o.outcome_status = 'succeeded'
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

COMMENT ON FUNCTION routing.ops_metrics(interval, timestamptz) IS
    'One row per sample (metric, labels, value) for a metrics scrape: the integrity report with each metric''s kind, then the write path over the window ending at p_as_of (routing.describe_metrics lists them). Read-only; every figure is index-driven, so its cost follows the window''s traffic, not the ledger''s size. 22023 on a p_window outside 1 second .. 1 day or a NULL or out-of-range p_as_of.';

REVOKE ALL ON routing.ops_metric_families FROM PUBLIC;
GRANT SELECT ON routing.ops_metric_families TO routing_readonly;
REVOKE ALL ON FUNCTION routing.describe_metrics() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.ops_metrics(interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.describe_metrics() TO routing_ops, routing_readonly;
GRANT EXECUTE ON FUNCTION routing.ops_metrics(interval, timestamptz) TO routing_ops, routing_readonly;

COMMIT;
