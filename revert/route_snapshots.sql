-- Revert routing_ledger:route_snapshots from pg
--
-- Back to route snapshots as released at @v0.3.0 (deploy/route_snapshots@v0.3.0.sql):
-- _full_explanation, with explain_outcome calling it, and _route_explanation.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

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

-- Same signature: its grants and comment are kept.
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

-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._expand_explanation(jsonb);

REVOKE ALL ON FUNCTION routing._route_explanation(numeric, text, int, int, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._full_explanation(jsonb) FROM PUBLIC;

COMMIT;
