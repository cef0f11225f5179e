-- Verify routing_ledger:reaper on pg

BEGIN;

DO $$
BEGIN
    ASSERT to_regprocedure('routing.reap_stuck_inferences(interval, timestamptz)') IS NOT NULL,
           'routing.reap_stuck_inferences is missing';
    ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc
             WHERE oid = 'routing.reap_stuck_inferences(interval, timestamptz)'::regprocedure),
           'routing.reap_stuck_inferences must be SECURITY DEFINER with a pinned search_path';
    ASSERT pg_catalog.has_function_privilege('routing_ops', 'routing.reap_stuck_inferences(interval, timestamptz)', 'EXECUTE'),
           'routing_ops must be able to run the reaper';
    ASSERT (SELECT prosrc LIKE '%heartbeat_at%' FROM pg_catalog.pg_proc
             WHERE oid = 'routing.reap_stuck_inferences(interval, timestamptz)'::regprocedure),
           'routing.reap_stuck_inferences does not count age from heartbeat_at (reaper v0.2)';
END
$$;

ROLLBACK;
