-- Deploy routing_ledger:route_snapshots to pg
-- requires: route_snapshots@v0.3.0
--
-- Stage 5 of an outcome's explanation (the stages are listed in deploy/route_plans.sql):
-- routing._expand_explanation puts a stored explanation back together, equal (jsonb =)
-- to the document choose_route returned at decision time, from its compact form and the
-- route snapshot its key names (an explanation stored whole is returned as stored);
-- routing.explain_outcome calls it. The table and the rest of the change are
-- route_snapshots@v0.3.0's.
--
-- Old names dropped here, put back by the revert: _full_explanation (this stage), and
-- _route_explanation, a request routed in full with no draw, which nothing calls
-- (routing._explain_from_catalog routes a request in full). Failover's list,
-- _route_candidates, is renamed routing._expand_candidates by write_path, beside its one
-- caller, fail_inference.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- Stage 5: the full router document of a stored explanation (whole or compact).
CREATE OR REPLACE FUNCTION routing._expand_explanation(p_explanation jsonb)
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
    RETURN routing._expand_explanation(v_explanation);
END
$$;

-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._full_explanation(jsonb);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS routing._route_explanation(numeric, text, int, int, timestamptz);

REVOKE ALL ON FUNCTION routing._expand_explanation(jsonb) FROM PUBLIC;

COMMIT;
