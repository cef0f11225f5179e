-- Verify routing_ledger:function_comments on pg
--
-- Every comment this change re-issues is set and at most 300 characters (the ones it
-- replaced were all longer).

BEGIN;

DO $$
DECLARE
    v_name text;
    v_comment text;
BEGIN
    -- A function by its signature, a table by its name.
    FOR v_name, v_comment IN
        SELECT o, CASE WHEN o LIKE '%(%' THEN obj_description(o::regprocedure, 'pg_proc')
                       ELSE obj_description(o::regclass, 'pg_class') END
          FROM unnest(ARRAY[
            'routing.reap_stuck_inferences(interval,timestamp with time zone)',
            'routing.check_budget_drift(timestamp with time zone)',
            'routing.upsert_model(text,text,text,numeric,numeric,numeric,boolean,text,boolean,integer,numeric)',
            'routing.explain_outcome(bigint)',
            'routing.partition_ledger(bigint)',
            'routing.create_partitions_ahead(integer,timestamp with time zone)',
            'routing.drop_partitions_older_than(interval,boolean,boolean,timestamp with time zone)',
            'routing.purge_request_keys(integer)',
            'routing.migrate_ledger_start()',
            'routing.migrate_ledger_copy(integer)',
            'routing.migrate_ledger_verify()',
            'routing.migrate_ledger_switch(interval)',
            'routing.migrate_ledger_finish()',
            'routing.migrate_ledger_back_out(interval)',
            'routing.validate_partition_links()',
            'routing.budget_spend',
            'routing.route_snapshots',
            'routing.outcome_request_keys']) o LOOP
        ASSERT v_comment IS NOT NULL, v_name || ' has no comment';
        ASSERT length(v_comment) <= 300, v_name || '''s comment is longer than 300 characters';
    END LOOP;
END
$$;

ROLLBACK;
