-- Verify routing_ledger:router on pg

BEGIN;

SELECT model_slug, cooling_until FROM routing.model_cooldowns WHERE false;
SELECT model_slug, task_type, judged_samples, learned_quality FROM routing.model_task_quality WHERE false;

DO $$
BEGIN
    ASSERT to_regprocedure('routing.choose_route(uuid, text, int, int, timestamptz, text)') IS NOT NULL,
           'routing.choose_route(..., p_request_id) is missing';
    ASSERT to_regprocedure('routing.choose_route(uuid, text, int, int, timestamptz)') IS NULL,
           'routing.choose_route''s v0.2 signature must be replaced, not overloaded';
    ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc
             WHERE oid = 'routing.choose_route(uuid, text, int, int, timestamptz, text)'::regprocedure),
           'routing.choose_route must be SECURITY DEFINER with a pinned search_path';
    ASSERT (SELECT prosrc LIKE '%_quality_draw%' FROM pg_catalog.pg_proc
             WHERE oid = 'routing._explain_route(numeric, text, int, int, timestamptz, text, uuid, text)'::regprocedure),
           'routing._explain_route has no draw at the floor gate (router v0.3)';
    ASSERT (SELECT prosrc LIKE '%quality_gate_z%' FROM pg_catalog.pg_proc
             WHERE oid = 'routing._explain_route(numeric, text, int, int, timestamptz, text, uuid, text)'::regprocedure),
           'routing._explain_route does not clear the floor with confidence (quality_gate_z)';
    ASSERT NOT pg_catalog.has_function_privilege('routing_app',
               'routing._explain_route(numeric, text, int, int, timestamptz, text, uuid, text)', 'EXECUTE'),
           'routing._explain_route must be private';
    ASSERT to_regprocedure('routing._route_document(numeric, text, int, int, timestamptz, text, uuid, text)') IS NULL
           AND to_regprocedure('routing._route_document(numeric, text, int, int, timestamptz, text)') IS NULL
           AND to_regprocedure('routing._route(numeric, text, int, int, timestamptz)') IS NULL,
           'the router''s old names (_route_document, _route) must be gone';
END
$$;

ROLLBACK;
