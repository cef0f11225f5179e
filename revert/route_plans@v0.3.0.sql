-- Revert routing_ledger:route_plans from pg
--
-- Back to route plans as released at @v0.2.1: the body of deploy/route_plans@v0.2.1.sql
-- (the global quality counter on every model_task_quality write, the 5-argument
-- _planned_explanation routing with no request, plans valid across price changes, the
-- cap's bound from the catalog columns), after dropping v0.3's additions; the catalog
-- epoch is bumped, so no plan built by this change is used.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- v0.3's objects first: the request-taking plan reader, the request's full route and the
-- plan's quality columns (a cache: emptied, then the columns dropped).
DROP FUNCTION IF EXISTS routing._planned_explanation(numeric, text, int, int, timestamptz, uuid, text);
DROP FUNCTION IF EXISTS routing._route_request_explanation(numeric, text, int, int, timestamptz, uuid, text);
TRUNCATE routing.route_plans;
ALTER TABLE routing.route_plans
    DROP COLUMN IF EXISTS quality_epoch,
    DROP COLUMN IF EXISTS explorable,
    DROP COLUMN IF EXISTS explore_share,
    DROP COLUMN IF EXISTS tier_from_tokens;

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
    FOREACH t SLICE 1 IN ARRAY ARRAY[['models', 'catalog'], ['task_floors', 'catalog'], ['settings', 'catalog'],
                                     ['model_task_quality', 'quality'], ['model_cooldowns', 'cooldowns']] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS bump_route_epoch ON routing.%I', t[1]);
        EXECUTE format('CREATE TRIGGER bump_route_epoch BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON routing.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch(%L)', t[1], t[2]);
    END LOOP;
END
$$;
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
BEGIN
    SELECT p_task_type, current_setting('TimeZone'), routing._route_epochs(),
           coalesce((SELECT max(c.cooling_until) FROM routing.model_cooldowns c WHERE c.cooling_until <= p_as_of),
                    '-infinity'),
           coalesce((SELECT min(c.cooling_until) FROM routing.model_cooldowns c WHERE c.cooling_until > p_as_of),
                    'infinity'),
           d.doc,
           b.max_in, b.max_out
      INTO v_plan.task_type, v_plan.time_zone, v_plan.epochs, v_plan.valid_from, v_plan.valid_until,
           v_doc, v_plan.max_price_in, v_plan.max_price_out
      -- OFFSET 0: evaluated once (a flattened subquery would call the router per model below).
      FROM (SELECT routing._route_document(NULL, p_task_type, 0, 0, p_as_of, 'snapshot') AS doc
            OFFSET 0) d
     CROSS JOIN LATERAL (SELECT max(m.price_in_per_mtok_usd) AS max_in, max(m.price_out_per_mtok_usd) AS max_out
                           FROM routing.models m
                          WHERE m.endpoint::text = d.doc ->> 'endpoint') b;

    INSERT INTO routing.route_snapshots (snapshot_key, candidates, dropped)
    VALUES (decode(v_doc ->> 'snapshot', 'hex'), v_doc -> 'snapshot_candidates', v_doc -> 'snapshot_dropped')
    ON CONFLICT (snapshot_key) DO NOTHING;

    -- The snapshot list is in rank order, so its first entries are the top candidates'.
    SELECT coalesce(array_agg((s.item ->> 'price_in_per_mtok_usd')::numeric ORDER BY s.ord), '{}'),
           coalesce(array_agg((s.item ->> 'price_out_per_mtok_usd')::numeric ORDER BY s.ord), '{}')
      INTO v_plan.top_price_in, v_plan.top_price_out
      FROM jsonb_array_elements(v_doc -> 'snapshot_candidates') WITH ORDINALITY s (item, ord)
     WHERE s.ord <= jsonb_array_length(v_doc -> 'candidates');
    v_plan.explanation := v_doc - 'snapshot_candidates' - 'snapshot_dropped';
    v_plan.built_at    := clock_timestamp();

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
           max_price_out = excluded.max_price_out, built_at = excluded.built_at
     WHERE p.epochs <= excluded.epochs;
    RETURN v_plan;
END
$$;

-- The outcome's compact explanation for a request, equal (jsonb =) to what
-- routing._route_explanation returns for it: from the task's current plan with this
-- request's figures put in, or routed in full when the per-call cap could drop a model.
CREATE OR REPLACE FUNCTION routing._planned_explanation(
    p_agent_cap_usd numeric,
    p_task_type     text,
    p_input_tokens  int,
    p_max_tokens    int,
    p_as_of         timestamptz
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
       AND p.epochs = routing._route_epochs();
    IF NOT FOUND THEN
        v_plan := routing._build_route_plan(p_task_type, p_as_of);
    END IF;
    IF p_agent_cap_usd IS NOT NULL
       AND routing._projected_cost(p_input_tokens, p_max_tokens, v_plan.max_price_in, v_plan.max_price_out)
           > p_agent_cap_usd THEN
        RETURN routing._route_explanation(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens, p_as_of);
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

REVOKE ALL ON routing.route_epochs, routing.route_plans FROM PUBLIC;
GRANT SELECT ON routing.route_epochs, routing.route_plans TO routing_readonly;
REVOKE ALL ON FUNCTION routing._bump_route_epoch() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._route_epochs() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._build_route_plan(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._planned_explanation(numeric, text, int, int, timestamptz) FROM PUBLIC;

UPDATE routing.route_epochs e SET epoch = e.epoch + 1 WHERE e.source = 'catalog';

COMMIT;
