-- Revert routing_ledger:route_plans from pg
--
-- Back to route plans as released at @v0.3.0 (deploy/route_plans@v0.3.0.sql): the
-- stages under their released names, _planned_explanation (its request-taking form as
-- released) and _route_request_explanation, _build_route_plan calling the router by its
-- released name (routing._route_document, which router's revert puts back). No table or
-- plan changes: a plan stored by either version is the other's too.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';


-- Builds the task's plan for p_as_of from one snapshot of the catalog, writes its route
-- snapshot if new and stores the plan (unless a plan of a later epoch is already there).
CREATE OR REPLACE FUNCTION routing._build_route_plan(p_task_type text, p_as_of timestamptz)
RETURNS routing.route_plans
LANGUAGE plpgsql
-- No SET clauses: its one caller runs under insert_decision's settings, and every name
-- here is qualified.
AS $$
DECLARE
    v_plan routing.route_plans;
    v_doc  jsonb;
    v_tick interval;
BEGIN
    SELECT p_task_type, current_setting('TimeZone'), routing._route_epochs(),
           coalesce((SELECT max(c.cooling_until) FROM routing.model_cooldowns c WHERE c.cooling_until <= p_as_of),
                    '-infinity'),
           coalesce((SELECT min(c.cooling_until) FROM routing.model_cooldowns c WHERE c.cooling_until > p_as_of),
                    'infinity'),
           coalesce((SELECT e.epoch FROM routing.quality_epochs e WHERE e.task_type = p_task_type), 0),
           d.doc,
           b.max_in, b.max_out, b.tier_from
      INTO v_plan.task_type, v_plan.time_zone, v_plan.epochs, v_plan.valid_from, v_plan.valid_until,
           v_plan.quality_epoch, v_doc, v_plan.max_price_in, v_plan.max_price_out,
           v_plan.tier_from_tokens
      -- OFFSET 0: evaluated once (a flattened subquery would call the router per model below).
      FROM (SELECT routing._route_document(NULL, p_task_type, 0, 0, p_as_of, 'snapshot', NULL, NULL) AS doc
            OFFSET 0) d
     -- The rates in force, and the first long-context tier
     CROSS JOIN LATERAL (SELECT max(r.input) AS max_in, max(r.output) AS max_out,
                                (SELECT min(p.min_input_tokens) FROM routing.model_prices p
                                   JOIN routing.models t ON t.slug = p.model_slug
                                  WHERE p.min_input_tokens > 0 AND p.token_class IN ('input', 'output')
                                    AND t.endpoint::text = d.doc ->> 'endpoint') AS tier_from
                           FROM routing.models m
                           JOIN routing._catalog_rates(p_as_of, 0) r ON r.model_slug = m.slug
                          WHERE m.endpoint::text = d.doc ->> 'endpoint') b;
    -- Valid only until the next price takes effect.
    SELECT greatest(v_plan.valid_from, v.valid_from), least(v_plan.valid_until, v.valid_until)
      INTO v_plan.valid_from, v_plan.valid_until
      FROM routing._price_validity(p_as_of) v;

    INSERT INTO routing.route_snapshots (snapshot_key, candidates, dropped)
    VALUES (decode(v_doc ->> 'snapshot', 'hex'), v_doc -> 'snapshot_candidates', v_doc -> 'snapshot_dropped')
    ON CONFLICT (snapshot_key) DO NOTHING;

    -- The snapshot list is in rank order, so its first entries are the top candidates'.
    SELECT coalesce(array_agg((s.item ->> 'price_in_per_mtok_usd')::numeric ORDER BY s.ord), '{}'),
           coalesce(array_agg((s.item ->> 'price_out_per_mtok_usd')::numeric ORDER BY s.ord), '{}')
      INTO v_plan.top_price_in, v_plan.top_price_out
      FROM jsonb_array_elements(v_doc -> 'snapshot_candidates') WITH ORDINALITY s (item, ord)
     WHERE s.ord <= jsonb_array_length(v_doc -> 'candidates');
    v_plan.explanation := v_doc - 'snapshot_candidates' - 'snapshot_dropped' - 'explorable';
    v_plan.built_at    := clock_timestamp();
    -- The quality tick the figures were evaluated at bounds the plan too.
    SELECT s.quality_half_life / 1024, s.quality_explore_share::double precision INTO v_tick, v_plan.explore_share
      FROM routing.settings s;
    v_plan.explorable  := v_doc -> 'explorable';
    v_plan.valid_from  := greatest(v_plan.valid_from, (v_doc ->> 'quality_as_of')::timestamptz);
    v_plan.valid_until := least(v_plan.valid_until, (v_doc ->> 'quality_as_of')::timestamptz + v_tick);

    -- One writer per plan at a time, and no one waits for it: a request that finds the
    -- plan's writer busy (another request rebuilding it, until that one commits) keeps
    -- what it built for itself, so a burst of rebuilds after a change never queues on the
    -- plan's row. (The snapshot above is different: the explanation names it, so it must
    -- be there at commit, and a concurrent insert of the same key is waited for.)
    IF NOT pg_try_advisory_xact_lock(hashtext('routing.route_plans'), hashtext(p_task_type || E'\n' || v_plan.time_zone)) THEN
        RETURN v_plan;
    END IF;
    INSERT INTO routing.route_plans AS p VALUES (v_plan.*)
    ON CONFLICT (task_type, time_zone) DO UPDATE
       SET epochs = excluded.epochs, valid_from = excluded.valid_from, valid_until = excluded.valid_until,
           explanation = excluded.explanation, top_price_in = excluded.top_price_in,
           top_price_out = excluded.top_price_out, max_price_in = excluded.max_price_in,
           max_price_out = excluded.max_price_out, built_at = excluded.built_at,
           quality_epoch = excluded.quality_epoch, explorable = excluded.explorable,
           explore_share = excluded.explore_share, tier_from_tokens = excluded.tier_from_tokens
     WHERE p.epochs <= excluded.epochs;
    RETURN v_plan;
END
$$;

-- routing._route_explanation for a request: its draws taken (the compact form, its
-- snapshot written first if no row has that key yet).
CREATE OR REPLACE FUNCTION routing._route_request_explanation(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz,
    p_agent_id      uuid,
    p_request_id    text
) RETURNS jsonb
LANGUAGE plpgsql
-- No SET clauses: its one caller runs under insert_decision's settings, and every name
-- here is qualified.
AS $$
DECLARE
    v_explanation jsonb;
BEGIN
    v_explanation := routing._route_document(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens,
                                             p_as_of, 'compact', p_agent_id, p_request_id);
    IF NOT EXISTS (SELECT FROM routing.route_snapshots s
                    WHERE s.snapshot_key = decode(v_explanation ->> 'snapshot', 'hex')) THEN
        v_explanation := routing._route_document(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens,
                                                 p_as_of, 'snapshot', p_agent_id, p_request_id);
        INSERT INTO routing.route_snapshots (snapshot_key, candidates, dropped)
        VALUES (decode(v_explanation ->> 'snapshot', 'hex'),
                v_explanation -> 'snapshot_candidates', v_explanation -> 'snapshot_dropped')
        ON CONFLICT (snapshot_key) DO NOTHING;
        v_explanation := v_explanation - 'snapshot_candidates' - 'snapshot_dropped' - 'explorable';
    END IF;
    RETURN v_explanation;
END
$$;

-- The v0.2 signature: a decision with no request, so no draw.
CREATE OR REPLACE FUNCTION routing._planned_explanation(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz
) RETURNS jsonb
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN routing._planned_explanation(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens, p_as_of,
                                        NULL, NULL);
END
$$;

-- The outcome's compact explanation for a request, equal (jsonb =) to what
-- routing._route_request_explanation returns for it: from the task's current plan with
-- this request's figures put in, or routed in full when the per-call cap could drop a
-- model or one of the request's draws falls in the exploration share.
CREATE OR REPLACE FUNCTION routing._planned_explanation(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz,
    p_agent_id      uuid,
    p_request_id    text
) RETURNS jsonb
LANGUAGE plpgsql
-- No SET clauses: its one caller, insert_decision, pins search_path, the generic plan
-- and jit = off, and every name here is qualified.
AS $$
DECLARE
    v_plan routing.route_plans;
BEGIN
    SELECT p.* INTO v_plan
      FROM routing.route_plans p
     WHERE p.task_type = p_task_type AND p.time_zone = current_setting('TimeZone')
       AND p_as_of >= p.valid_from AND p_as_of < p.valid_until
       AND p.epochs = routing._route_epochs()
       AND p.quality_epoch = coalesce((SELECT e.epoch FROM routing.quality_epochs e WHERE e.task_type = p_task_type), 0);
    IF NOT FOUND THEN
        v_plan := routing._build_route_plan(p_task_type, p_as_of);
    END IF;
    IF (p_agent_cap_usd IS NOT NULL
        AND routing._projected_cost(p_input_tokens, p_max_tokens, v_plan.max_price_in, v_plan.max_price_out)
            > p_agent_cap_usd)
       -- A long-context request, at its tier's rates.
       OR p_input_tokens >= v_plan.tier_from_tokens
       OR (p_request_id IS NOT NULL AND v_plan.explorable <> '[]'::jsonb
           AND EXISTS (SELECT FROM jsonb_array_elements(v_plan.explorable) x (m)
                        CROSS JOIN LATERAL (SELECT routing._quality_draw(p_agent_id, p_request_id, x.m ->> 'slug')) d (u)
                        WHERE d.u < v_plan.explore_share
                          AND round(((x.m ->> 'mean')::double precision
                                     + (x.m ->> 'sd')::double precision * routing._normal_quantile(1 - d.u))::numeric, 4)
                              >= (v_plan.explanation ->> 'min_quality')::numeric)) THEN
        RETURN routing._route_request_explanation(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens, p_as_of,
                                                  p_agent_id, p_request_id);
    END IF;
    RETURN v_plan.explanation || jsonb_build_object(
        'input_tokens',       p_input_tokens,
        'max_tokens',         p_max_tokens,
        'per_call_cap_usd',   p_agent_cap_usd,
        'as_of',              p_as_of,
        'projected_cost_usd', CASE WHEN cardinality(v_plan.top_price_in) > 0 THEN
                                  routing._projected_cost(p_input_tokens, p_max_tokens,
                                                          v_plan.top_price_in[1], v_plan.top_price_out[1]) END,
        'candidates',         (SELECT coalesce(jsonb_agg(c.item || jsonb_build_object('projected_cost_usd',
                                          routing._projected_cost(p_input_tokens, p_max_tokens,
                                                                  v_plan.top_price_in[c.ord], v_plan.top_price_out[c.ord]))
                                                         ORDER BY c.ord), '[]'::jsonb)
                                 FROM jsonb_array_elements(v_plan.explanation -> 'candidates') WITH ORDINALITY c (item, ord)));
END
$$;

-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._explain_from_plan(numeric, text, int, int, timestamptz);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._explain_from_plan(numeric, text, int, int, timestamptz, uuid, text);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._explain_from_catalog(numeric, text, int, int, timestamptz, uuid, text);

REVOKE ALL ON FUNCTION routing._planned_explanation(numeric, text, int, int, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._planned_explanation(numeric, text, int, int, timestamptz, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._route_request_explanation(numeric, text, int, int, timestamptz, uuid, text) FROM PUBLIC;

COMMIT;
