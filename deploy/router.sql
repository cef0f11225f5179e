-- Deploy routing_ledger:router to pg
-- requires: router@v0.1.0
-- requires: task_endpoints
-- requires: argument_checks
--
-- cheapest_clearing_floor: routing.choose_route, the shared cooldown table it reads,
-- and the learned per-task quality the judge queue maintains. The router is one
-- set-based query over the catalog; the document it returns is the same one
-- insert_decision stores as the outcome's explanation, so the router never runs twice
-- for one request and the client never sees the catalog.
--
-- v0.2: the first gate drops a model whose endpoint (routing.models.endpoint) is not
-- the task's (routing.task_floors.endpoint, chat for a task not listed), with reason
-- wrong_endpoint; an embeddings task may ask for 0 output tokens (a chat task still
-- needs at least 1, as in v0.1); every argument is bounded (p_task_type at most 64
-- characters, p_as_of a finite timestamp in 1970..9999) through routing._require_*.
--
-- v0.3 (issue 20; the estimate, its decay and the draw are change learned_quality's):
-- - The floor gate compares the posterior-mean estimate (k q_prior + sum w x) / (k + sum w)
--   of the model for the task, at the decision's quality tick, with the floor: no switch
--   at min_judged_samples. quality_source is 'prior' while a model has no label weight
--   for the task, 'learned' after.
-- - Re-measuring: with a request (p_agent_id, p_request_id), a learned model whose
--   estimate is below the floor and that ranks before the cheapest model the floor and
--   the cap admit takes, on a quality_explore_share of requests (the request's draw u for
--   the model below the share), a Thompson draw theta = estimate + sd * Phi^-1(1 - u); it
--   is admitted when theta clears the floor. So it carries at most that share of traffic,
--   and less the surer the estimate is that it is below the floor (min(share,
--   P(quality >= floor))); labels decay, so the estimate's sd grows back and a model that
--   improved is found again. Without a request: no draw (choose_route's default).
-- - Each candidate and each model dropped at the floor gate carries quality_source,
--   label_weight, effective_quality (the estimate) and gate_quality (the figure that
--   cleared or missed the floor: theta for a model its draw admitted, else the estimate;
--   a draw that misses leaves the document as it was, so such a request keeps its route
--   plan's explanation); a candidate carries
--   explored (admitted by its draw); the document, exploration (rank 0 was explored) and
--   quality_as_of (the tick).
--
-- After v0.3.0 (issue 20, change quality_gate): a floor cleared with confidence. A model
-- with labels for the task (quality_source 'learned') is admitted by its estimate only when
--     estimate - z * sd * k / (k + w)  >=  floor,
-- z = routing.settings.quality_gate_z (default 0.5), k = quality_prior_weight, w its label
-- weight, sd the estimate's (above). k / (k + w) is the share of the estimate its prior
-- still carries: the margin asked is z of its sds while labels are few or faded (a model
-- whose labels fade toward an optimistic prior no longer clears the floor on the prior's
-- word), and vanishes as labels accumulate (a model that carries the traffic is judged on
-- its measured mean, so noise does not push a good model out). A model that misses this
-- figure is dropped with reason below_quality_floor and, like one whose estimate is below
-- the floor, re-measured by its capped draw (a model just under the figure clears the
-- floor on every draw that falls in the share, so it is found again). A model with no
-- label weight is admitted by its estimate (the operator's q_prior) as before; z = 0 is
-- v0.3.0's rule. gate_quality is that figure (theta for a model its draw admitted). The
-- route plan's explorable list and its per-request draw are unchanged: the models this
-- gate drops are the ones a request may draw for, with their mean and sd.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.model_cooldowns (
    model_slug        text PRIMARY KEY REFERENCES routing.models (slug) ON DELETE CASCADE,
    cooling_until     timestamptz NOT NULL,
    last_inference_id bigint,
    retry_after_ms    int,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE routing.model_cooldowns IS
    'Shared cooldown: a model answered 429, so every gateway process routes around it until cooling_until. Written by fail_inference.';

CREATE TABLE IF NOT EXISTS routing.model_task_quality (
    model_slug      text NOT NULL REFERENCES routing.models (slug) ON DELETE CASCADE,
    task_type       text NOT NULL,
    judged_samples  bigint NOT NULL DEFAULT 0 CHECK (judged_samples >= 0),
    score_sum       numeric NOT NULL DEFAULT 0 CHECK (score_sum >= 0),
    -- Judge scores are 1..5; quality is on the q_prior scale 0..1.
    learned_quality numeric GENERATED ALWAYS AS
                    (CASE WHEN judged_samples > 0 THEN round((score_sum / judged_samples - 1) / 4, 4) END) STORED,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_slug, task_type)
);
COMMENT ON TABLE routing.model_task_quality IS
    'Learned quality per (model, task type) from judge labels: (mean score - 1) / 4. The router uses it instead of q_prior once judged_samples >= routing.settings.min_judged_samples.';

-- Stage 1 of an explanation (the stages are listed in deploy/route_plans.sql): the router
-- proper, for an agent's per-call cap already read, in one of three forms (p_form), all
-- from one read of the catalog:
-- - 'document': choose_route's document, every candidate and every dropped model;
-- - 'compact': the document's header, its first max_attempts candidates,
--   candidate_count, dropped_counts (by reason) and snapshot, the hex sha256 of the
--   ranked rows' catalog inputs (everything the two lists say except projected costs;
--   the session's TimeZone, which the lists' timestamps are rendered in). No list is
--   built, so a request whose snapshot already exists pays for the top candidates only;
-- - 'snapshot': the compact form plus snapshot_candidates and snapshot_dropped, the two
--   lists with each projected cost replaced by the model's two prices (the shared,
--   token-independent record route_snapshots stores under that key).
-- Private: choose_route and insert_decision validate their arguments and read the
-- agent, then call this (insert_decision through the route plan's stages, in route_plans).
CREATE OR REPLACE FUNCTION routing._explain_route(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz,
    p_form          text,
    p_agent_id      uuid,
    p_request_id    text
) RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
-- The catalog is small and every parameter is a value, so the generic plan is the
-- right plan; cached by PL/pgSQL, it saves the ~1 ms of planning a custom plan (chosen
-- otherwise, because the generic estimate looks dear) would cost on every request.
SET plan_cache_mode = force_generic_plan
-- Never JIT-compiled: on a catalog without statistics (a fresh deploy, before autovacuum
-- has analysed it) the planner's estimate of this query passes jit_above_cost, and
-- compiling it then costs ~150 ms on every request for a query that runs in 0.3 ms.
SET jit = off
AS $$
BEGIN
IF p_form IS NULL OR p_form NOT IN ('document', 'compact', 'snapshot') THEN
    RAISE EXCEPTION '_explain_route: p_form must be document, compact or snapshot, got %', coalesce(p_form, 'NULL')
        USING ERRCODE = 'invalid_parameter_value';
END IF;
RETURN (
WITH cfg AS (
    SELECT coalesce(f.min_quality, s.default_min_quality) AS min_quality,
           coalesce(f.endpoint::text, 'chat') AS endpoint,
           s.quality_prior_weight::double precision AS prior_weight, s.quality_half_life,
           s.quality_explore_share::double precision AS explore_share,
           s.quality_gate_z::double precision AS gate_z,
           routing._quality_tick(p_as_of, s.quality_half_life) AS quality_at,
           coalesce(s.max_attempts, 1) AS keep
      FROM routing.settings s
      LEFT JOIN routing.task_floors f ON f.task_type = p_task_type
),
scored AS (
    SELECT m.slug, m.provider, m.provider_model, m.m_allowed, m.enabled, m.q_prior,
           m.endpoint::text AS endpoint, cfg.endpoint AS task_endpoint,
           pr.input AS price_in_per_mtok_usd, pr.output AS price_out_per_mtok_usd,
           pr.input + pr.output AS price_per_mtok_usd,
           round(p_input_tokens * pr.input / 1e6
                 + p_max_tokens * pr.output / 1e6, 10) AS projected_cost_usd,
           round(e.mean::numeric, 4) AS effective_quality,
           CASE WHEN q.weights_at IS NOT NULL THEN 'learned' ELSE 'prior' END AS quality_source,
           round(e.w::numeric, 4) AS label_weight,
           -- The figure the floor gate compares (a model with no label weight: its estimate).
           CASE WHEN q.weights_at IS NULL THEN round(e.mean::numeric, 4)
                ELSE round((e.mean - cfg.gate_z * e.sd * cfg.prior_weight / (cfg.prior_weight + e.w))::numeric, 4)
           END AS bound_quality,
           e.mean, e.sd,
           cfg.explore_share,
           q.judged_samples,
           c.cooling_until,
           cfg.min_quality,
           cfg.keep
      FROM routing.models m
     CROSS JOIN cfg
      -- The price gate, the ranking and the projected costs (10
      -- decimals) use the input and output rates in force at p_as_of for this request's
      -- long-context tier, not the catalog columns.
      LEFT JOIN routing._catalog_rates(p_as_of, p_input_tokens) pr ON pr.model_slug = m.slug
      LEFT JOIN routing.model_task_quality q
             ON q.model_slug = m.slug AND q.task_type = p_task_type
      LEFT JOIN routing.model_cooldowns c
             ON c.model_slug = m.slug AND c.cooling_until > p_as_of
     -- The estimate at the quality tick (routing._quality_estimate's, inlined).
     CROSS JOIN LATERAL (SELECT d.w, least(greatest((cfg.prior_weight * m.q_prior::double precision
                                                     + coalesce(q.weighted_score, 0) * d.f)
                                                    / (cfg.prior_weight + d.w), 0), 1) AS mean
                           FROM (SELECT f.f, coalesce(q.label_weight, 0) * f.f AS w
                                   FROM (SELECT CASE WHEN q.weights_at IS NULL THEN 0::double precision
                                                     ELSE routing._quality_decay(q.weights_at, cfg.quality_at,
                                                                                 cfg.quality_half_life) END) f (f)) d) e0
     CROSS JOIN LATERAL (SELECT e0.w, e0.mean, sqrt(e0.mean * (1 - e0.mean) / (cfg.prior_weight + e0.w + 1)) AS sd) e
),
gated AS (
    -- Each model falls at the first gate it fails, in the contract's order.
    SELECT s.*,
           CASE
               WHEN s.endpoint <> s.task_endpoint       THEN 'wrong_endpoint'
               WHEN NOT (coalesce(s.price_in_per_mtok_usd, 0) > 0
                         AND coalesce(s.price_out_per_mtok_usd, 0) > 0) THEN 'not_enrolled_no_price'
               WHEN s.q_prior IS NULL                    THEN 'not_enrolled_no_q_prior'
               WHEN s.m_allowed IS NOT TRUE              THEN 'm_allowed_veto'
               WHEN NOT s.enabled                        THEN 'disabled'
               WHEN s.bound_quality < s.min_quality      THEN 'below_quality_floor'
               WHEN s.projected_cost_usd > p_agent_cap_usd THEN 'exceeds_budget_cap'
           END AS exploit_reason
      FROM scored s
),
positioned AS (
    -- pos: the ranking's order over the whole catalog; winner_pos: the cheapest model the
    -- floor (by its gate figure, bound_quality) and the cap admit, cooldowns aside.
    SELECT p.*, min(p.pos) FILTER (WHERE p.exploit_reason IS NULL) OVER () AS winner_pos
      FROM (SELECT g.*, row_number() OVER (ORDER BY g.price_per_mtok_usd, g.effective_quality DESC, g.slug) AS pos
              FROM gated g) p
),
drawn AS (
    -- The request's draw, for a learned model below the floor ranked before that winner,
    -- and its Thompson figure when the draw falls in the exploration share.
    SELECT d.*,
           CASE WHEN d.u < d.explore_share
                THEN round((d.mean + d.sd * routing._normal_quantile(1 - d.u))::numeric, 4) END AS theta
      FROM (SELECT p.*,
                   CASE WHEN p_request_id IS NOT NULL AND p.exploit_reason = 'below_quality_floor'
                             AND p.quality_source = 'learned' AND p.pos < p.winner_pos
                        THEN routing._quality_draw(p_agent_id, p_request_id, p.slug) END AS u
              FROM positioned p) d
),
admitted AS (
    -- An explored model passes the floor by its draw and meets the cap gate after it.
    SELECT d.*,
           coalesce(d.theta >= d.min_quality, false) AS explored,
           CASE WHEN d.theta >= d.min_quality THEN d.theta ELSE d.bound_quality END AS gate_quality,
           CASE WHEN d.theta >= d.min_quality
                THEN CASE WHEN d.projected_cost_usd > p_agent_cap_usd THEN 'exceeds_budget_cap' END
                ELSE d.exploit_reason END AS gate_reason
      FROM drawn d
),
judged AS (
    -- Cooldowns are ignored when every otherwise-eligible model is cooling down:
    -- a slow answer beats no answer.
    SELECT w.*,
           coalesce(w.gate_reason,
                    CASE WHEN w.cooling_until IS NOT NULL AND NOT w.all_cooling THEN 'cooling_down' END) AS reason
      FROM (SELECT g.*,
                   coalesce(bool_and(g.cooling_until IS NOT NULL)
                                FILTER (WHERE g.gate_reason IS NULL) OVER (), false) AS all_cooling
              FROM admitted g) w
),
ranked AS (
    SELECT j.*,
           CASE WHEN j.reason IS NULL THEN
               (row_number() OVER (PARTITION BY j.reason IS NULL
                                   ORDER BY j.price_per_mtok_usd, j.effective_quality DESC, j.slug) - 1)::int
           END AS rank
      FROM judged j
),
items AS (
    -- A list entry as the document lists it, built only where the form lists it.
    SELECT r.*,
           CASE WHEN p_form = 'compact' AND NOT (r.reason IS NULL AND r.rank < r.keep) THEN NULL
                WHEN r.reason IS NULL THEN
                    jsonb_build_object(
                        'slug', r.slug, 'rank', r.rank,
                        'provider', r.provider, 'provider_model', r.provider_model,
                        'price_per_mtok_usd', r.price_per_mtok_usd,
                        'projected_cost_usd', r.projected_cost_usd,
                        'effective_quality', r.effective_quality,
                        'quality_source', r.quality_source,
                        'label_weight', r.label_weight,
                        'gate_quality', r.gate_quality,
                        'explored', r.explored,
                        'cooling_until', r.cooling_until)
                ELSE
                    jsonb_strip_nulls(jsonb_build_object(
                        'slug', r.slug, 'reason', r.reason,
                        'endpoint', CASE WHEN r.reason = 'wrong_endpoint' THEN r.endpoint END,
                        'effective_quality', CASE WHEN r.reason = 'below_quality_floor' THEN r.effective_quality END,
                        'quality_source', CASE WHEN r.reason = 'below_quality_floor' THEN r.quality_source END,
                        'label_weight', CASE WHEN r.reason = 'below_quality_floor' THEN r.label_weight END,
                        'gate_quality', CASE WHEN r.reason = 'below_quality_floor' THEN r.gate_quality END,
                        'projected_cost_usd', CASE WHEN r.reason = 'exceeds_budget_cap' THEN r.projected_cost_usd END,
                        'cooling_until', CASE WHEN r.reason = 'cooling_down' THEN r.cooling_until END,
                        'price_per_mtok_usd', CASE WHEN r.reason = 'm_allowed_veto' THEN r.price_per_mtok_usd END))
           END AS item
      FROM ranked r
),
entries AS (
    -- The snapshot form's entry trades the projected cost (the one figure that depends
    -- on the token counts) for the model's two prices.
    SELECT i.*,
           CASE WHEN p_form = 'snapshot' AND i.item ? 'projected_cost_usd'
                THEN (i.item - 'projected_cost_usd')
                     || jsonb_build_object('price_in_per_mtok_usd', i.price_in_per_mtok_usd,
                                           'price_out_per_mtok_usd', i.price_out_per_mtok_usd)
                WHEN p_form = 'snapshot' THEN i.item
           END AS snapshot_item
      FROM items i
),
summary AS (
    -- One pass over the ranked catalog: the winner (rank 0), the cheapest vetoed price,
    -- whether anything fell at the floor, budget or cooldown gates, and what the form
    -- lists.
    SELECT max(r.slug)               FILTER (WHERE r.rank = 0) AS slug,
           max(r.provider)           FILTER (WHERE r.rank = 0) AS provider,
           max(r.provider_model)     FILTER (WHERE r.rank = 0) AS provider_model,
           max(r.projected_cost_usd) FILTER (WHERE r.rank = 0) AS projected_cost_usd,
           max(r.price_per_mtok_usd) FILTER (WHERE r.rank = 0) AS price_per_mtok_usd,
           min(r.price_per_mtok_usd) FILTER (WHERE r.reason = 'm_allowed_veto') AS cheapest_vetoed,
           coalesce(bool_or(r.reason IN ('below_quality_floor', 'exceeds_budget_cap', 'cooling_down')), false)
               AS fell_at_floor,
           coalesce(bool_or(r.all_cooling), false) AS all_cooling,
           coalesce(bool_or(r.explored) FILTER (WHERE r.rank = 0), false) AS exploration,
           -- The plan's list of the models a request may draw for (routing.route_plans).
           coalesce(jsonb_agg(jsonb_build_object('slug', r.slug, 'mean', r.mean, 'sd', r.sd) ORDER BY r.pos)
                        FILTER (WHERE p_form = 'snapshot' AND r.exploit_reason = 'below_quality_floor'
                                AND r.quality_source = 'learned' AND r.pos < r.winner_pos), '[]'::jsonb) AS explorable,
           coalesce(jsonb_agg(r.item ORDER BY r.rank)
                        FILTER (WHERE r.reason IS NULL AND (p_form = 'document' OR r.rank < r.keep)),
                    '[]'::jsonb) AS candidates,
           coalesce(jsonb_agg(r.item ORDER BY r.slug)
                        FILTER (WHERE r.reason IS NOT NULL AND p_form = 'document'), '[]'::jsonb) AS dropped,
           count(*) FILTER (WHERE r.reason IS NULL) AS candidate_count,
           array_agg(r.reason) FILTER (WHERE r.reason IS NOT NULL AND p_form <> 'document') AS reasons,
           coalesce(jsonb_agg(r.snapshot_item ORDER BY r.rank)
                        FILTER (WHERE r.reason IS NULL AND p_form = 'snapshot'), '[]'::jsonb) AS snapshot_candidates,
           coalesce(jsonb_agg(r.snapshot_item ORDER BY r.slug)
                        FILTER (WHERE r.reason IS NOT NULL AND p_form = 'snapshot'), '[]'::jsonb) AS snapshot_dropped,
           -- The snapshot key: every input of the two lists but the token counts, as
           -- record text (injective), cooling times as epochs.
           sha256(convert_to(current_setting('TimeZone') || E'\n'
                             || coalesce(string_agg(ROW(r.slug, r.rank, r.reason, r.provider, r.provider_model,
                                                        r.endpoint, r.price_in_per_mtok_usd, r.price_out_per_mtok_usd,
                                                        r.effective_quality, r.quality_source,
                                                        extract(epoch FROM r.cooling_until),
                                                        r.label_weight, r.gate_quality, r.explored)::text, E'\n'
                                                    ORDER BY r.rank NULLS LAST, r.slug)
                                             FILTER (WHERE p_form <> 'document'), ''),
                             'UTF8')) AS snapshot_key
      FROM entries r
)
SELECT CASE p_form
           -- The document is returned as built: concatenating it would copy it again.
           WHEN 'document' THEN d.doc
           ELSE (d.doc - 'dropped')
                || jsonb_build_object(
                       'snapshot', encode(s.snapshot_key, 'hex'),
                       'candidate_count', s.candidate_count,
                       'dropped_counts', (SELECT coalesce(jsonb_object_agg(x.reason, x.n), '{}'::jsonb)
                                            FROM (SELECT u.reason, count(*) AS n
                                                    FROM unnest(s.reasons) u (reason) GROUP BY u.reason) x))
                || CASE WHEN p_form = 'snapshot'
                        THEN jsonb_build_object('snapshot_candidates', s.snapshot_candidates,
                                                'snapshot_dropped', s.snapshot_dropped,
                                                'explorable', s.explorable)
                        ELSE '{}'::jsonb END
       END
  FROM summary s
 CROSS JOIN cfg c
 CROSS JOIN LATERAL (SELECT jsonb_build_object(
    'decision_rule',
        CASE
            WHEN s.slug IS NOT NULL THEN
                CASE WHEN s.cheapest_vetoed < s.price_per_mtok_usd
                     THEN 'm_allowed_veto_applied' ELSE 'cheapest_clearing_floor' END
            WHEN s.fell_at_floor THEN 'no_candidate_clears_floor'
            ELSE 'no_candidate_enrolled'
        END,
    'chosen_model_slug', s.slug,
    'provider',          s.provider,
    'provider_model',    s.provider_model,
    'projected_cost_usd', s.projected_cost_usd,
    'task_type',         p_task_type,
    'endpoint',          c.endpoint,
    'min_quality',       c.min_quality,
    'input_tokens',      p_input_tokens,
    'max_tokens',        p_max_tokens,
    'per_call_cap_usd',  p_agent_cap_usd,
    'as_of',             p_as_of,
    'cooldowns_ignored', s.all_cooling,
    'quality_as_of',     c.quality_at,
    'exploration',       s.exploration,
    'candidates',        s.candidates,
    'dropped',           s.dropped) AS doc) d
);
END
$$;

-- The form for a decision with no request (no draw).
CREATE OR REPLACE FUNCTION routing._explain_route(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz,
    p_form          text
) RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN routing._explain_route(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens, p_as_of, p_form,
                                  NULL, NULL) - 'explorable';
END
$$;

-- v0.3: p_request_id (the old signature is replaced, so a v0.2 call resolves to this one).
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing.choose_route(uuid, text, int, int, timestamptz);
CREATE OR REPLACE FUNCTION routing.choose_route(
    p_agent_id     uuid,
    p_task_type    text,
    p_input_tokens int,
    p_max_tokens   int,
    p_as_of        timestamptz DEFAULT now(),
    p_request_id   text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_cap numeric;
BEGIN
    PERFORM routing._check_route_args('choose_route', p_agent_id, p_task_type, p_input_tokens, p_max_tokens);
    PERFORM routing._require_timestamp('choose_route', 'p_as_of', p_as_of);
    IF p_request_id IS NOT NULL THEN
        PERFORM routing._require_text('choose_route', 'p_request_id', p_request_id, 255);
    END IF;
    SELECT a.per_call_cap_usd INTO v_cap FROM routing.agents a WHERE a.id = p_agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'choose_route: unknown agent %', p_agent_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN routing._explain_route(v_cap, p_task_type, p_input_tokens, p_max_tokens, p_as_of, 'document',
                                  p_agent_id, p_request_id);
END
$$;

-- Shared by choose_route and insert_decision so both name the same argument the same way.
-- The task's endpoint is read only for p_max_tokens = 0, the one value whose validity
-- depends on it, so the usual call costs no lookup.
CREATE OR REPLACE FUNCTION routing._check_route_args(
    p_fn text, p_agent_id uuid, p_task_type text, p_input_tokens int, p_max_tokens int
) RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_not_null(p_fn, 'p_agent_id', p_agent_id);
    PERFORM routing._require_text(p_fn, 'p_task_type', p_task_type, 64);
    PERFORM routing._require_int(p_fn, 'p_input_tokens', p_input_tokens);
    PERFORM routing._require_int(p_fn, 'p_max_tokens', p_max_tokens);
    IF p_max_tokens = 0
       AND coalesce((SELECT f.endpoint::text FROM routing.task_floors f WHERE f.task_type = p_task_type), 'chat') <> 'embeddings'
    THEN
        RAISE EXCEPTION '%: p_max_tokens must be >= 1 for task type % (a chat task), got 0', p_fn, quote_literal(p_task_type)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'only an embeddings task (routing.task_floors.endpoint) may ask for 0 output tokens';
    END IF;
END
$$;

-- The old names, put back by the revert: the router proper was _route_document; _route
-- (its document form under v0.1's name) has no caller left. (route_snapshots' rework,
-- next, drops _route_explanation, the one other caller of the old name.)
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._route(numeric, text, int, int, timestamptz);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._route_document(numeric, text, int, int, timestamptz, text);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._route_document(numeric, text, int, int, timestamptz, text, uuid, text);

COMMENT ON FUNCTION routing.choose_route(uuid, text, int, int, timestamptz, text) IS
    'Read-only router: gates each model (endpoint, price, q_prior, m_allowed, enabled, quality floor with confidence, cap, cooldown), ranks the rest by price, quality, slug; returns the document insert_decision stores (its decision, given p_request_id). 22023 on a bad argument, P0002 on an unknown agent.';

REVOKE ALL ON FUNCTION routing._explain_route(numeric, text, int, int, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._explain_route(numeric, text, int, int, timestamptz, text, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._check_route_args(text, uuid, text, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.choose_route(uuid, text, int, int, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.choose_route(uuid, text, int, int, timestamptz, text) TO routing_app;
REVOKE ALL ON routing.model_cooldowns, routing.model_task_quality FROM PUBLIC;
GRANT SELECT ON routing.model_cooldowns, routing.model_task_quality TO routing_readonly;

-- Route plans built by the previous router are not current any more (the next request of
-- each task rebuilds its plan with this gate).
UPDATE routing.route_epochs e SET epoch = e.epoch + 1 WHERE e.source = 'catalog';

COMMIT;
