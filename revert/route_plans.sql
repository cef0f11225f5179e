-- Revert routing_ledger:route_plans from pg
--
-- Back to route plans as released at @v0.3.0 (deploy/route_plans@v0.3.0.sql): only the
-- request-taking _planned_explanation changed, and it is put back as released. No table
-- or plan changes: a plan stored by either version is the other's too.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

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

COMMIT;
