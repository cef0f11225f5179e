-- Verify routing_ledger:judge_queue on pg
--
-- v0.2: the functions check their bounds first (a 256-character worker name is 22023;
-- v0.1.0 stored it). Run inside the verify's own rolled-back transaction.

BEGIN;

SELECT id, task_type, agent_id, chosen_model_slug, inference_id, created_at FROM routing.judge_queue WHERE false;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['routing.claim_judge_batch(text, int)',
                             'routing.record_judgement(bigint, text, numeric, text, text)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(f)),
               f || ' must be SECURITY DEFINER with a pinned search_path';
        ASSERT pg_catalog.has_function_privilege('routing_judge', f, 'EXECUTE'), 'routing_judge must be able to run ' || f;
    END LOOP;
    ASSERT to_regprocedure('routing._outcome_awaits_judge(text, bigint, text)') IS NOT NULL,
           'routing._outcome_awaits_judge is missing';
    ASSERT pg_catalog.pg_get_viewdef('routing.judge_queue'::regclass) LIKE '%_outcome_awaits_judge(%',
           'routing.judge_queue must test routing._outcome_awaits_judge';
    ASSERT (SELECT prosrc LIKE '%weights_at%' FROM pg_catalog.pg_proc
             WHERE oid = 'routing.record_judgement(bigint, text, numeric, text, text)'::regprocedure),
           'record_judgement does not feed the decayed sums (judge_queue v0.3)';
    BEGIN
        PERFORM routing.claim_judge_batch(repeat('w', 256), 1);
        RAISE EXCEPTION 'claim_judge_batch accepted a 256-character p_worker: the v0.2 bounds are missing';
    EXCEPTION WHEN invalid_parameter_value THEN
        NULL;
    END;
END
$$;

ROLLBACK;
