-- Deploy routing_ledger:route_plans to pg
-- requires: route_plans@v0.3.0
-- requires: router
-- requires: route_snapshots
--
-- The stages of an outcome's explanation, in the order they run (the private functions
-- sort together: _explain_* build it, _expand_* read it back):
--   1. routing._explain_route (router): the catalog ranked for a request, in one of
--      three forms: document (choose_route's: every model), compact (the header, the
--      first max_attempts candidates, counts by reason, the snapshot key) or snapshot
--      (compact, plus the two lists with each model's prices for its projected cost).
--   2. routing._build_route_plan: a task's route plan, stage 1 with no cap and no tokens,
--      stored with its route snapshot.
--   3. routing._explain_from_plan: a request's compact explanation from its task's
--      current plan with the request's figures put in (insert_decision stores it), or
--   4. routing._explain_from_catalog: routed in full (a per-call cap that could drop a
--      model, a long-context request, an exploring draw), its snapshot written first.
--      Both give the same jsonb for the same request.
--   5. routing._expand_explanation (route_snapshots): a stored explanation back to the
--      full document (explain_outcome; jsonb-equal to choose_route's at the decision),
--      and routing._expand_candidates (write_path): its whole ranked list, for failover.
--
-- The router's catalog work done once, not on every request. Everything the router
-- decides from the catalog (gates, ranking, the snapshot and its key, the drop counts)
-- depends on the catalog tables, not on the request: of a request, only the token
-- counts (projected costs), the agent's per-call cap (a gate) and the instant (which
-- cooldowns are still running) enter it. So the write path keeps, per task type, a
-- route plan: the compact explanation routing._explain_route builds for that task
-- with no cap and no tokens, the prices of its top candidates, and the interval of
-- instants over which no cooldown starts or ends. A request whose plan is current pays
-- for one index lookup and for its own few projected costs, whatever the catalog's size.
-- Measured in one run (20 models, fsync off): the compact router 248 us a request, the
-- plan 54 us; insert_decision over 1,000 models 1.4x its cost over 10 (it was ~30x).
--
-- - Current means: built at the present routing.route_epochs, in the session's TimeZone
--   (the lists render their timestamps in it), for an instant inside [valid_from,
--   valid_until). The epochs are three counters, each bumped by a statement trigger on
--   the tables the router reads: catalog (models, task_floors, settings; a deleted route
--   snapshot too), quality (model_task_quality, the judge's) and cooldowns
--   (model_cooldowns, a 429's). Three rows, so that an operator's open catalog edit never
--   holds up a gateway's 429 or a judge, and a 429 storm never holds up the judge. The
--   trigger runs BEFORE the statement, so a writer takes its counter's row lock first and
--   holds no router row another writer of that counter could want; readers never lock
--   them. A plan is built in one statement from one snapshot, the epochs it is labelled
--   with included, so it can never be labelled newer than what it was built from.
-- - A per-call cap: the plan is used only when even the dearest model of the task's
--   endpoint would fit under the cap at this request's token counts (then the cap gate
--   drops nothing and the router's answer is the plan's); otherwise the request is
--   routed in full (routing._explain_from_catalog).
-- - Plans are a cache: routing.route_plans is UNLOGGED (empty after a crash or on a
--   promoted standby, and rebuilt on the next request), written only when a request
--   finds no current plan (an upsert that does not put back a plan of older epochs), by
--   one request at a time under a transaction-level advisory lock it only tries (class
--   hashtext('routing.route_plans')): the others use the plan they built and wait for
--   nothing.
-- - Cost of the counters: statements that change one of the router's inputs queue on its
--   counter's row until they commit (catalog edits; record_judgement; a 429's cooldown),
--   and each change makes every task's next request rebuild its plan (about one
--   choose_route).
--
-- Learned quality (change learned_quality):
-- - A plan also holds its task's learned quality: it is current only at the task's
--   routing.quality_epochs counter (a label rebuilds its own task's plan, no other) and
--   only inside the quality tick it was evaluated at (the decision's instant rounded down
--   to half-life / 1024): valid_from and valid_until are narrowed to that tick.
-- - Draws: the plan lists its explorable models (learned, estimate below the floor,
--   ranked before the cheapest model the floor admits: their mean and sd at the tick)
--   with the exploration share. A request computes its draw for those few only; when no
--   draw admits a model (the usual case) the plan's explanation is the request's, exactly;
--   when one does (an exploration: at most the share times the explorable models of the
--   requests), the request is routed in full with its draws
--   (routing._explain_from_catalog) and writes its own route snapshot, its Thompson
--   figure being in it. So a request's routing cost stays flat in the catalog's size but
--   on an exploring request.
-- - _explain_from_plan takes the request (p_agent_id, p_request_id); its no-request
--   form stays (no draw).
-- - What a request pays on a current plan: one statement that finds the plan and
--   compares its epochs, plain-value tests (no query) for the cap and the tier, the draws'
--   query only for a plan that lists explorable models, and its projected costs added to
--   the plan's few candidates.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.route_epochs (
    source text   PRIMARY KEY CHECK (source IN ('catalog', 'cooldowns', 'quality')),
    epoch  bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE routing.route_epochs IS
    'Versions of what the router reads, bumped by statement triggers: catalog (routing.models, task_floors, settings, a deleted route snapshot), cooldowns (model_cooldowns), quality (model_task_quality). A route plan is current only at the epochs it was built at.';
INSERT INTO routing.route_epochs (source) VALUES ('catalog'), ('cooldowns'), ('quality')
ON CONFLICT (source) DO NOTHING;

CREATE UNLOGGED TABLE IF NOT EXISTS routing.route_plans (
    task_type     text        NOT NULL,
    time_zone     text        NOT NULL,
    -- routing.route_epochs' epochs, in source order, when it was built.
    epochs        bigint[]    NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_until   timestamptz NOT NULL,
    -- The compact explanation for no cap and no tokens (projected costs 0).
    explanation   jsonb       NOT NULL,
    -- Prices of explanation's candidates, in their order.
    top_price_in  numeric[]   NOT NULL,
    top_price_out numeric[]   NOT NULL,
    -- The dearest prices among the models of the task's endpoint: the cap's bound.
    max_price_in  numeric,
    max_price_out numeric,
    built_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_type, time_zone)
);
-- A cache: emptied rather than migrated (rebuilt by the next request of each task).
TRUNCATE routing.route_plans;
ALTER TABLE routing.route_plans
    ADD COLUMN IF NOT EXISTS quality_epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS explorable    jsonb  NOT NULL DEFAULT '[]',
    ADD COLUMN IF NOT EXISTS explore_share double precision NOT NULL DEFAULT 0;

-- The smallest min_input_tokens of a long-context tier among the
-- endpoint's input and output prices (NULL: none); a request with at least that many
-- input tokens is routed in full, at its tier's rates.
ALTER TABLE routing.route_plans ADD COLUMN IF NOT EXISTS tier_from_tokens int;
-- Plans built before prices were versioned are not current any more.
UPDATE routing.route_epochs e SET epoch = e.epoch + 1 WHERE e.source = 'catalog';
COMMENT ON TABLE routing.route_plans IS
    'Cache of the router''s catalog-dependent work per task type (and session TimeZone): the compact explanation with no cap and no tokens, valid while routing.route_epochs holds its epochs, for instants in [valid_from, valid_until). Unlogged; rebuilt by the write path whenever it is not current.';

-- The trigger's argument names the counter.
CREATE OR REPLACE FUNCTION routing._bump_route_epoch()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    UPDATE routing.route_epochs e SET epoch = e.epoch + 1 WHERE e.source = TG_ARGV[0];
    RETURN NULL;
END
$$;

-- The current epochs, in the order route_plans.epochs keeps them.
CREATE OR REPLACE FUNCTION routing._route_epochs()
RETURNS bigint[]
LANGUAGE plpgsql
STABLE
-- No SET clause (it runs on every decision); every name is qualified.
AS $$
BEGIN
    RETURN (SELECT array_agg(e.epoch ORDER BY e.source) FROM routing.route_epochs e);
END
$$;

DO $$
DECLARE
    t text[];
BEGIN
    -- v0.3: model_task_quality's row changes bump its task's counter (learned_quality's
    -- row trigger); its global counter is bumped on TRUNCATE only, below.
    FOREACH t SLICE 1 IN ARRAY ARRAY[['models', 'catalog'], ['task_floors', 'catalog'], ['settings', 'catalog'],
                                     ['model_cooldowns', 'cooldowns']] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS bump_route_epoch ON routing.%I', t[1]);
        EXECUTE format('CREATE TRIGGER bump_route_epoch BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON routing.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch(%L)', t[1], t[2]);
    END LOOP;
END
$$;
DROP TRIGGER IF EXISTS bump_route_epoch ON routing.model_task_quality;
CREATE TRIGGER bump_route_epoch BEFORE TRUNCATE ON routing.model_task_quality
    FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch('quality');
DROP TRIGGER IF EXISTS bump_route_epoch ON routing.route_snapshots;
CREATE TRIGGER bump_route_epoch BEFORE DELETE OR TRUNCATE ON routing.route_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch('catalog');

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
      FROM (SELECT routing._explain_route(NULL, p_task_type, 0, 0, p_as_of, 'snapshot', NULL, NULL) AS doc
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

-- Stage 4: a request routed in full from the catalog, its draws taken (the compact form,
-- its snapshot written first if no row has that key yet).
CREATE OR REPLACE FUNCTION routing._explain_from_catalog(
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
    v_explanation := routing._explain_route(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens,
                                            p_as_of, 'compact', p_agent_id, p_request_id);
    IF NOT EXISTS (SELECT FROM routing.route_snapshots s
                    WHERE s.snapshot_key = decode(v_explanation ->> 'snapshot', 'hex')) THEN
        v_explanation := routing._explain_route(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens,
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

-- Stage 3 for a decision with no request, so no draw.
CREATE OR REPLACE FUNCTION routing._explain_from_plan(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz
) RETURNS jsonb
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN routing._explain_from_plan(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens, p_as_of,
                                      NULL, NULL);
END
$$;

-- Stage 3: the outcome's compact explanation for a request, equal (jsonb =) to what
-- routing._explain_from_catalog returns for it: from the task's current plan with this
-- request's figures put in, or routed in full when the per-call cap could drop a model
-- or one of the request's draws falls in the exploration share.
CREATE OR REPLACE FUNCTION routing._explain_from_plan(
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
    v_full boolean;
BEGIN
    SELECT p.* INTO v_plan
      FROM routing.route_plans p
     WHERE p.task_type = p_task_type AND p.time_zone = current_setting('TimeZone')
       AND p_as_of >= p.valid_from AND p_as_of < p.valid_until
       -- routing._route_epochs(), written out: the call would cost more than its query.
       AND p.epochs = (SELECT array_agg(e.epoch ORDER BY e.source) FROM routing.route_epochs e)
       AND p.quality_epoch = coalesce((SELECT e.epoch FROM routing.quality_epochs e WHERE e.task_type = p_task_type), 0);
    IF NOT FOUND THEN
        v_plan := routing._build_route_plan(p_task_type, p_as_of);
    END IF;
    -- Routed in full: when the per-call cap could drop a model, for a long-context request
    -- (at its tier's rates), or when one of the request's draws explores. The plain tests
    -- first; the draws' query only for a plan that lists explorable models.
    v_full := (p_agent_cap_usd IS NOT NULL
               AND routing._projected_cost(p_input_tokens, p_max_tokens, v_plan.max_price_in, v_plan.max_price_out)
                   > p_agent_cap_usd)
              OR p_input_tokens >= v_plan.tier_from_tokens;
    IF v_full IS NOT TRUE AND p_request_id IS NOT NULL AND v_plan.explorable <> '[]'::jsonb THEN
        v_full := EXISTS (SELECT FROM jsonb_array_elements(v_plan.explorable) x (m)
                        CROSS JOIN LATERAL (SELECT routing._quality_draw(p_agent_id, p_request_id, x.m ->> 'slug')) d (u)
                        WHERE d.u < v_plan.explore_share
                          AND round(((x.m ->> 'mean')::double precision
                                     + (x.m ->> 'sd')::double precision * routing._normal_quantile(1 - d.u))::numeric, 4)
                              >= (v_plan.explanation ->> 'min_quality')::numeric);
    END IF;
    IF v_full THEN
        RETURN routing._explain_from_catalog(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens, p_as_of,
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

-- The stages' old names (route_plans@v0.3.0), put back by the revert.
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._planned_explanation(numeric, text, int, int, timestamptz);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._planned_explanation(numeric, text, int, int, timestamptz, uuid, text);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._route_request_explanation(numeric, text, int, int, timestamptz, uuid, text);

REVOKE ALL ON routing.route_epochs, routing.route_plans FROM PUBLIC;
GRANT SELECT ON routing.route_epochs, routing.route_plans TO routing_readonly;
REVOKE ALL ON FUNCTION routing._bump_route_epoch() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._route_epochs() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._build_route_plan(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._explain_from_plan(numeric, text, int, int, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._explain_from_plan(numeric, text, int, int, timestamptz, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._explain_from_catalog(numeric, text, int, int, timestamptz, uuid, text) FROM PUBLIC;

COMMIT;
