-- Deploy routing_ledger:route_snapshots to pg
-- requires: router
-- requires: argument_checks
--
-- Explanations whose size does not follow the catalog. choose_route's document lists
-- every candidate and every dropped model; stored whole on each outcome it was most of
-- the ledger's bytes (185 kB a request at 1,000 models). What an outcome keeps instead
-- (routing._route_explanation, called by insert_decision):
--
-- - the document's per-request header as it was (rule, model, projected cost, task,
--   floor, token counts, per-call cap, as_of, cooldowns_ignored, a refusal);
-- - its first max_attempts candidates, with their figures, for a human or the judge
--   reading the row, candidate_count, and dropped_counts (models dropped, by reason);
-- - snapshot: the hex key of a row of routing.route_snapshots, the shared record of the
--   rest. A snapshot is the ranked candidate list and the dropped list with every
--   projected cost taken out and the model's two prices put in its place, keyed by the
--   sha256 of the ranked rows' inputs (the router computes it, routing._route_document's
--   compact form): every request that met the same catalog state (prices, quality,
--   gates, cooldowns; and, where a per-call cap drops models, the same ones dropped)
--   shares one row, whatever its token counts. Projected costs are derived again from
--   the outcome's own token counts with the router's formula.
--
-- The router builds neither list for a request whose snapshot exists: at steady state
-- a decision pays for the key (one string_agg and a sha256 over the ranked rows), its
-- top candidates and the counts, instead of two lists it would then compact again.
--
-- routing.explain_outcome(id) puts the document back together, equal (jsonb =) to what
-- choose_route returned at decision time; an outcome written before this change (a
-- whole document, no snapshot key) is returned as stored. Failover reads the full
-- ranked list (routing._route_candidates), so it picks exactly as it did from a whole
-- document, cooldowns and disabled models included.
--
-- Snapshots are never updated; one that no retained outcome names is garbage (a
-- retention job may delete those older than the oldest retained outcome).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.route_snapshots (
    snapshot_key bytea PRIMARY KEY CHECK (octet_length(snapshot_key) = 32),
    candidates   jsonb NOT NULL,
    dropped      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE routing.route_snapshots IS
    'Shared, content-addressed record of the router''s lists: ranked candidates and dropped models, projected costs replaced by the model''s prices (price_in_per_mtok_usd, price_out_per_mtok_usd). Key: sha256 of the router''s ranked rows that the content is built from. Outcomes name it in explanation->>''snapshot''; routing.explain_outcome rebuilds the full document.';

-- A projected cost as the router computes it (router: routing._route).
CREATE OR REPLACE FUNCTION routing._projected_cost(
    p_input_tokens int, p_max_tokens int, p_price_in numeric, p_price_out numeric
) RETURNS numeric
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(p_input_tokens * p_price_in / 1e6 + p_max_tokens * p_price_out / 1e6, 6)
$$;

-- The outcome's explanation for a request, for an agent's per-call cap already read:
-- the router's compact form (routing._route_document), its snapshot written first if
-- no row has that key yet. The lists are built only then, from a second read of the
-- catalog whose key and lists come from the same statement, so a row always holds
-- the content its key was computed from.
CREATE OR REPLACE FUNCTION routing._route_explanation(
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
    v_explanation jsonb;
BEGIN
    v_explanation := routing._route_document(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens,
                                             p_as_of, 'compact');
    IF NOT EXISTS (SELECT FROM routing.route_snapshots s
                    WHERE s.snapshot_key = decode(v_explanation ->> 'snapshot', 'hex')) THEN
        v_explanation := routing._route_document(p_agent_cap_usd, p_task_type, p_input_tokens, p_max_tokens,
                                                 p_as_of, 'snapshot');
        INSERT INTO routing.route_snapshots (snapshot_key, candidates, dropped)
        VALUES (decode(v_explanation ->> 'snapshot', 'hex'),
                v_explanation -> 'snapshot_candidates', v_explanation -> 'snapshot_dropped')
        ON CONFLICT (snapshot_key) DO NOTHING;
        v_explanation := v_explanation - 'snapshot_candidates' - 'snapshot_dropped';
    END IF;
    RETURN v_explanation;
END
$$;

-- A snapshot list put back for an outcome's token counts: each price pair becomes the
-- projected cost again.
CREATE OR REPLACE FUNCTION routing._expand_snapshot_list(p_items jsonb, p_input_tokens int, p_max_tokens int)
RETURNS jsonb
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(
               CASE WHEN x.item ? 'price_in_per_mtok_usd'
                    THEN (x.item - 'price_in_per_mtok_usd' - 'price_out_per_mtok_usd')
                         || jsonb_build_object('projected_cost_usd',
                                routing._projected_cost(p_input_tokens, p_max_tokens,
                                                        (x.item ->> 'price_in_per_mtok_usd')::numeric,
                                                        (x.item ->> 'price_out_per_mtok_usd')::numeric))
                    ELSE x.item END
               ORDER BY x.ord), '[]'::jsonb)
      FROM jsonb_array_elements(p_items) WITH ORDINALITY x (item, ord)
$$;

-- The full router document of a stored explanation (whole or compact).
CREATE OR REPLACE FUNCTION routing._full_explanation(p_explanation jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
SET jit = off
AS $$
DECLARE
    v_snap routing.route_snapshots;
    v_in   int := (p_explanation ->> 'input_tokens')::int;
    v_max  int := (p_explanation ->> 'max_tokens')::int;
BEGIN
    IF p_explanation IS NULL OR NOT p_explanation ? 'snapshot' THEN
        RETURN p_explanation;
    END IF;
    SELECT * INTO v_snap FROM routing.route_snapshots s
     WHERE s.snapshot_key = decode(p_explanation ->> 'snapshot', 'hex');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'route snapshot % is missing', p_explanation ->> 'snapshot'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a snapshot an outcome names must be kept as long as the outcome';
    END IF;
    RETURN (p_explanation - 'snapshot' - 'candidate_count' - 'dropped_counts')
        || jsonb_build_object('candidates', routing._expand_snapshot_list(v_snap.candidates, v_in, v_max),
                              'dropped', routing._expand_snapshot_list(v_snap.dropped, v_in, v_max));
END
$$;

-- The ranked candidates of a stored explanation, every one of them: failover's list.
CREATE OR REPLACE FUNCTION routing._route_candidates(p_explanation jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    IF p_explanation IS NULL OR NOT p_explanation ? 'snapshot'
       OR (p_explanation ->> 'candidate_count')::int <= jsonb_array_length(p_explanation -> 'candidates') THEN
        RETURN p_explanation -> 'candidates';
    END IF;
    -- Failover reads slug and rank only, which a snapshot keeps as they were.
    RETURN (SELECT s.candidates FROM routing.route_snapshots s
             WHERE s.snapshot_key = decode(p_explanation ->> 'snapshot', 'hex'));
END
$$;

CREATE OR REPLACE FUNCTION routing.explain_outcome(p_outcome_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_explanation jsonb;
BEGIN
    PERFORM routing._require_not_null('explain_outcome', 'p_outcome_id', p_outcome_id);
    SELECT o.explanation INTO v_explanation FROM routing.routing_outcomes o WHERE o.id = p_outcome_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'explain_outcome: unknown outcome %', p_outcome_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN routing._full_explanation(v_explanation);
END
$$;

COMMENT ON FUNCTION routing.explain_outcome(bigint) IS
    'The full router document of an outcome, every candidate and every dropped model with its reason, exactly as choose_route returned it at decision time (jsonb-equal), rebuilt from the outcome''s compact explanation and its shared route snapshot; plus the refusal of a request refused before dispatch. An outcome stored whole is returned as stored. P0002 on an unknown outcome, 22023 on NULL.';

REVOKE ALL ON routing.route_snapshots FROM PUBLIC;
GRANT SELECT ON routing.route_snapshots TO routing_readonly;
REVOKE ALL ON FUNCTION routing._projected_cost(int, int, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._route_explanation(numeric, text, int, int, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._expand_snapshot_list(jsonb, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._full_explanation(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._route_candidates(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.explain_outcome(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.explain_outcome(bigint) TO routing_readonly, routing_ops;

COMMIT;
