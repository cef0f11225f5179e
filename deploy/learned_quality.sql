-- Deploy routing_ledger:learned_quality to pg
-- requires: router
-- requires: judge_queue
-- requires: route_plans
-- requires: argument_checks
--
-- What the router learns from the judge, as a statistician would estimate it (issue 20).
--
-- - The estimate. A model's quality for a task is the posterior mean
--     q = (k * q_prior + sum(w_i * x_i)) / (k + sum(w_i)),   x_i = (score_i - 1) / 4,
--   k = routing.settings.quality_prior_weight (default 10): the prior counts as k labels,
--   and every label moves the estimate, from the first (no switch at min_judged_samples).
--   Its uncertainty is the Beta posterior's, sd = sqrt(q (1 - q) / (k + sum(w_i) + 1)).
-- - Recency. A label's weight w_i halves every routing.settings.quality_half_life (default
--   14 days), counted from its outcome's created_at. routing.model_task_quality keeps,
--   per (model, task), the two decayed sums referenced to one instant (weights_at): the
--   weight and the weighted score as they stand at weights_at. A label at t is added in
--   constant time: at or after weights_at the sums decay to t and gain 1 and x (weights_at
--   becomes t); before it (a late judge) it adds 2^-((weights_at - t) / half-life) and x
--   times that. Read at instant tau, both sums are multiplied by 2^-((tau - weights_at) /
--   half-life). A changed half-life re-references every row to the instant of the change
--   under the old one (a trigger on routing.settings), so it applies from then on. Sums
--   are double precision: they are weights, not money, and the exponent is clamped so
--   a label a thousand half-lives old counts as ~1e-301, never as an underflow error.
-- - The quality tick. The router evaluates every estimate at the decision's instant
--   rounded down to a multiple of half-life / 1024 (20 minutes at 14 days; inside it a
--   label's weight moves by under 0.07 %), so that a route plan holds the figures for its
--   whole tick and choose_route, insert_decision and explain_outcome agree exactly.
-- - Per-task quality epochs. A label changes its task's figures only: routing.quality_epochs
--   holds a counter per task type, bumped by a row trigger on model_task_quality, and a
--   route plan is current only at its task's counter, so a label costs one task one plan
--   rebuild instead of every task's.
-- - The draw. A deterministic uniform in [0, 1) per (agent_id, request_id, model): the
--   first 52 bits of a sha256, never random(), so a decision can be replayed.
--
-- Existing counts are kept: a (model, task) with judged_samples n and score_sum s becomes
-- weight n and weighted score (s - n) / 4 at its updated_at, i.e. its labels count as if
-- all were given then. judged_samples, score_sum and learned_quality (the plain,
-- undecayed mean) stay as the cumulative record; the router no longer reads them.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- Constant defaults: no table rewrite, and the settings row is one row.
ALTER TABLE routing.settings
    ADD COLUMN IF NOT EXISTS quality_prior_weight numeric NOT NULL DEFAULT 10
        CONSTRAINT settings_quality_prior_weight_check CHECK (quality_prior_weight > 0 AND quality_prior_weight <= 1000000),
    ADD COLUMN IF NOT EXISTS quality_half_life interval NOT NULL DEFAULT '14 days'
        CONSTRAINT settings_quality_half_life_check CHECK (quality_half_life >= '1 second' AND quality_half_life <= '100 years'),
    ADD COLUMN IF NOT EXISTS quality_explore_share numeric NOT NULL DEFAULT 0.03
        CONSTRAINT settings_quality_explore_share_check CHECK (quality_explore_share >= 0 AND quality_explore_share <= 1);
COMMENT ON COLUMN routing.settings.quality_prior_weight IS
    'k: how many labels q_prior counts as in the estimate (k q_prior + sum w x) / (k + sum w).';
COMMENT ON COLUMN routing.settings.quality_half_life IS
    'A label''s weight halves every quality_half_life, counted from its outcome''s created_at (at least 1 second); a change applies from then on.';
COMMENT ON COLUMN routing.settings.quality_explore_share IS
    'The share of requests on which a learned model whose estimate is below the floor, and cheaper than the chosen one, takes a Thompson draw at the floor gate (0: never re-measure).';
COMMENT ON COLUMN routing.settings.min_judged_samples IS
    'No longer read by the router (v0.3: every label moves the estimate from the first); kept for older clients.';

-- The hex digits of sha256 are uniform; 52 bits fit a double exactly.
ALTER TABLE routing.model_task_quality
    ADD COLUMN IF NOT EXISTS label_weight   double precision NOT NULL DEFAULT 0
        CONSTRAINT model_task_quality_label_weight_check CHECK (label_weight >= 0),
    ADD COLUMN IF NOT EXISTS weighted_score double precision NOT NULL DEFAULT 0
        CONSTRAINT model_task_quality_weighted_score_check CHECK (weighted_score >= 0),
    ADD COLUMN IF NOT EXISTS weights_at     timestamptz;
COMMENT ON COLUMN routing.model_task_quality.label_weight IS
    'Sum of the labels'' weights as it stood at weights_at (each label 1 at its outcome''s created_at, halving every quality_half_life).';
COMMENT ON COLUMN routing.model_task_quality.weighted_score IS
    'Sum of weight * (score - 1) / 4 as it stood at weights_at.';
COMMENT ON COLUMN routing.model_task_quality.weights_at IS
    'The instant label_weight and weighted_score are referenced to; NULL: no label yet.';
COMMENT ON TABLE routing.model_task_quality IS
    'Judge labels per (model, task type): the decayed sums the router''s estimate reads (label_weight, weighted_score at weights_at) and the cumulative record (judged_samples, score_sum, learned_quality: the plain mean).';

-- Nothing learned is lost: the counts become weight at their updated_at.
UPDATE routing.model_task_quality q
   SET label_weight = q.judged_samples, weighted_score = greatest((q.score_sum - q.judged_samples) / 4, 0),
       weights_at = q.updated_at
 WHERE q.judged_samples > 0 AND q.weights_at IS NULL;

CREATE TABLE IF NOT EXISTS routing.quality_epochs (
    task_type text   PRIMARY KEY,
    epoch     bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE routing.quality_epochs IS
    'Version of each task type''s learned quality, bumped by a row trigger on routing.model_task_quality: a route plan is current only at its task''s epoch (absent: 0).';

CREATE OR REPLACE FUNCTION routing._bump_quality_epoch()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    INSERT INTO routing.quality_epochs AS e (task_type, epoch)
    SELECT DISTINCT t.task_type, 1
      FROM (SELECT CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.task_type END
            UNION ALL
            SELECT CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.task_type END) t (task_type)
     WHERE t.task_type IS NOT NULL
    ON CONFLICT (task_type) DO UPDATE SET epoch = e.epoch + 1;
    RETURN NULL;
END
$$;

-- Row changes bump their task's epoch; a TRUNCATE still bumps the global quality counter
-- (route_plans' statement trigger, kept for it alone).
DROP TRIGGER IF EXISTS bump_route_epoch ON routing.model_task_quality;
CREATE TRIGGER bump_route_epoch BEFORE TRUNCATE ON routing.model_task_quality
    FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch('quality');
DROP TRIGGER IF EXISTS bump_quality_epoch ON routing.model_task_quality;
CREATE TRIGGER bump_quality_epoch AFTER INSERT OR UPDATE OR DELETE ON routing.model_task_quality
    FOR EACH ROW EXECUTE FUNCTION routing._bump_quality_epoch();

-- 2^-((p_to - p_from) / p_half_life), the exponent clamped to 0..1000 half-lives: a label
-- never weighs more than 1 (one given after the quality tick counts as at the tick).
CREATE OR REPLACE FUNCTION routing._quality_decay(p_from timestamptz, p_to timestamptz, p_half_life interval)
RETURNS double precision
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT power(2::double precision,
                 -least(greatest(extract(epoch FROM p_to - p_from)::double precision
                                 / extract(epoch FROM p_half_life)::double precision, 0), 1000))
$$;

-- The instant the router evaluates estimates at for a decision at p_as_of: p_as_of
-- rounded down to a multiple of half-life / 1024 (from the Unix epoch).
CREATE OR REPLACE FUNCTION routing._quality_tick(p_as_of timestamptz, p_half_life interval)
RETURNS timestamptz
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT to_timestamp(floor(extract(epoch FROM p_as_of) / (extract(epoch FROM p_half_life) / 1024))
                        * (extract(epoch FROM p_half_life) / 1024))
$$;

-- A deterministic uniform draw in [0, 1) for (agent, request, model).
CREATE OR REPLACE FUNCTION routing._quality_draw(p_agent_id uuid, p_request_id text, p_slug text)
RETURNS double precision
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ('x' || substr(encode(sha256(convert_to(p_agent_id::text || E'\n' || p_request_id || E'\n' || p_slug,
                                                   'UTF8')), 'hex'), 1, 13))::bit(52)::bigint
           / 4503599627370496::double precision
$$;

-- The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
CREATE OR REPLACE FUNCTION routing._normal_quantile(p double precision)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    a1 CONSTANT double precision := -3.969683028665376e+01::double precision;
    a2 CONSTANT double precision :=  2.209460984245205e+02::double precision;
    a3 CONSTANT double precision := -2.759285104469687e+02::double precision;
    a4 CONSTANT double precision :=  1.383577518672690e+02::double precision;
    a5 CONSTANT double precision := -3.066479806614716e+01::double precision;
    a6 CONSTANT double precision :=  2.506628277459239e+00::double precision;
    b1 CONSTANT double precision := -5.447609879822406e+01::double precision;
    b2 CONSTANT double precision :=  1.615858368580409e+02::double precision;
    b3 CONSTANT double precision := -1.556989798598866e+02::double precision;
    b4 CONSTANT double precision :=  6.680131188771972e+01::double precision;
    b5 CONSTANT double precision := -1.328068155288572e+01::double precision;
    c1 CONSTANT double precision := -7.784894002430293e-03::double precision;
    c2 CONSTANT double precision := -3.223964580411365e-01::double precision;
    c3 CONSTANT double precision := -2.400758277161838e+00::double precision;
    c4 CONSTANT double precision := -2.549732539343734e+00::double precision;
    c5 CONSTANT double precision :=  4.374664141464968e+00::double precision;
    c6 CONSTANT double precision :=  2.938163982698783e+00::double precision;
    d1 CONSTANT double precision :=  7.784695709041462e-03::double precision;
    d2 CONSTANT double precision :=  3.224671290700398e-01::double precision;
    d3 CONSTANT double precision :=  2.445134137142996e+00::double precision;
    d4 CONSTANT double precision :=  3.754408661907416e+00::double precision;
    q double precision;
    r double precision;
BEGIN
    -- The draw's extremes are clamped: no infinite quality from a 0 or 1.
    p := least(greatest(p, 1e-12::double precision), 1 - 1e-12::double precision);
    IF p < 0.02425 THEN
        q := sqrt(-2 * ln(p));
        RETURN (((((c1 * q + c2) * q + c3) * q + c4) * q + c5) * q + c6) / ((((d1 * q + d2) * q + d3) * q + d4) * q + 1);
    ELSIF p <= 1 - 0.02425 THEN
        q := p - 0.5;
        r := q * q;
        RETURN (((((a1 * r + a2) * r + a3) * r + a4) * r + a5) * r + a6) * q
               / (((((b1 * r + b2) * r + b3) * r + b4) * r + b5) * r + 1);
    END IF;
    q := sqrt(-2 * ln(1 - p));
    RETURN -(((((c1 * q + c2) * q + c3) * q + c4) * q + c5) * q + c6) / ((((d1 * q + d2) * q + d3) * q + d4) * q + 1);
END
$$;

-- The estimate of one (model, task) at instant p_at from its row's sums: label weight,
-- posterior mean and sd, all unrounded. A NULL weights_at is no label (the prior alone).
CREATE OR REPLACE FUNCTION routing._quality_estimate(
    p_q_prior numeric, p_label_weight double precision, p_weighted_score double precision,
    p_weights_at timestamptz, p_at timestamptz, p_prior_weight numeric, p_half_life interval,
    OUT label_weight double precision, OUT estimate double precision, OUT sd double precision)
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    f double precision := CASE WHEN p_weights_at IS NULL THEN 0
                               ELSE routing._quality_decay(p_weights_at, p_at, p_half_life) END;
    n double precision;
BEGIN
    label_weight := coalesce(p_label_weight, 0) * f;
    n := p_prior_weight::double precision + label_weight;
    estimate := least(greatest((p_prior_weight::double precision * p_q_prior::double precision
                                + coalesce(p_weighted_score, 0) * f) / n, 0), 1);
    sd := sqrt(estimate * (1 - estimate) / (n + 1));
END
$$;

-- Every (model, task) with labels, at p_as_of: the figures the router would use, exactly
-- (at the same quality tick). For the metrics exporter and an operator's eye.
CREATE OR REPLACE FUNCTION routing.model_quality(p_as_of timestamptz DEFAULT now())
RETURNS TABLE (model_slug text, task_type text, q_prior numeric, label_weight numeric,
               effective_quality numeric, quality_sd numeric, judged_samples bigint, weights_at timestamptz)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_timestamp('model_quality', 'p_as_of', p_as_of);
    RETURN QUERY
    SELECT q.model_slug, q.task_type, m.q_prior,
           round(e.label_weight::numeric, 4), round(e.estimate::numeric, 4), round(e.sd::numeric, 4),
           q.judged_samples, q.weights_at
      FROM routing.model_task_quality q
      JOIN routing.models m ON m.slug = q.model_slug
     CROSS JOIN routing.settings s
     CROSS JOIN LATERAL routing._quality_estimate(m.q_prior, q.label_weight, q.weighted_score, q.weights_at,
                                                  routing._quality_tick(p_as_of, s.quality_half_life),
                                                  s.quality_prior_weight, s.quality_half_life) e
     WHERE m.q_prior IS NOT NULL
     ORDER BY q.model_slug, q.task_type;
END
$$;
COMMENT ON FUNCTION routing.model_quality(timestamptz) IS
    'Per (model, task type) with labels: the label weight, effective quality (the posterior-mean estimate) and its sd the router uses at p_as_of (its quality tick), beside q_prior and the cumulative judged_samples. Read-only. 22023 on a p_as_of that is NULL or not a finite timestamp in 1970..9999.';

-- A changed half-life applies from the change on: every row's sums are decayed to now
-- under the old one and re-referenced there (one UPDATE over models x tasks).
CREATE OR REPLACE FUNCTION routing._rebase_quality_sums()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    UPDATE routing.model_task_quality q
       SET label_weight   = q.label_weight * routing._quality_decay(q.weights_at, now(), OLD.quality_half_life),
           weighted_score = q.weighted_score * routing._quality_decay(q.weights_at, now(), OLD.quality_half_life),
           weights_at     = now()
     WHERE q.weights_at < now();
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS rebase_quality_sums ON routing.settings;
CREATE TRIGGER rebase_quality_sums AFTER UPDATE OF quality_half_life ON routing.settings
    FOR EACH ROW WHEN (OLD.quality_half_life IS DISTINCT FROM NEW.quality_half_life)
    EXECUTE FUNCTION routing._rebase_quality_sums();

REVOKE ALL ON routing.quality_epochs FROM PUBLIC;
GRANT SELECT ON routing.quality_epochs TO routing_readonly;
REVOKE ALL ON FUNCTION routing._bump_quality_epoch() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._quality_decay(timestamptz, timestamptz, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._quality_tick(timestamptz, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._quality_draw(uuid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._normal_quantile(double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._quality_estimate(numeric, double precision, double precision, timestamptz,
                                                 timestamptz, numeric, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._rebase_quality_sums() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.model_quality(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.model_quality(timestamptz) TO routing_readonly, routing_ops;

COMMIT;
