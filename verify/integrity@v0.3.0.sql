-- Verify routing_ledger:integrity on pg

BEGIN;

SELECT id, request_id, agent_id, chosen_model_slug, outcome_status, created_at FROM routing.orphan_outcomes WHERE false;
SELECT id, outcome_id, model_slug, due_at, routed_for, heartbeat_at FROM routing.stuck_inferences WHERE false;
SELECT outcome_id, inference_id, inference_outcome_id FROM routing.link_mismatches WHERE false;

DO $$
DECLARE
    m         text;
    v_metrics text[];
BEGIN
    ASSERT to_regprocedure('routing.integrity_report(timestamptz)') IS NOT NULL,
           'routing.integrity_report is missing';
    ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc
             WHERE oid = 'routing.integrity_report(timestamptz)'::regprocedure),
           'routing.integrity_report must be SECURITY DEFINER with a pinned search_path';
    -- The metrics the contract names must all be reported.
    SELECT array_agg(r.metric) INTO v_metrics FROM routing.integrity_report() r;
    FOREACH m IN ARRAY ARRAY['orphan_outcomes', 'orphan_outcomes_24h', 'stuck_routed_1h', 'in_flight',
                             'terminal_outcome_with_routed_inference',
                             'outcomes_without_terminal_state_1h',
                             'streams_interrupted_24h', 'requests_cancelled_24h', 'cost_mismatch_24h'] LOOP
        ASSERT m = ANY (v_metrics), 'integrity_report does not report ' || m;
    END LOOP;
END
$$;

ROLLBACK;
