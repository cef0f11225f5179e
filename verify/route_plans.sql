-- Verify routing_ledger:route_plans on pg

BEGIN;

SELECT source, epoch FROM routing.route_epochs WHERE false;
SELECT task_type, time_zone, epochs, valid_from, valid_until, explanation, top_price_in, top_price_out,
       max_price_in, max_price_out, built_at, quality_epoch, explorable, explore_share,
       tier_from_tokens
  FROM routing.route_plans WHERE false;

DO $$
DECLARE
    f text;
    t text;
BEGIN
    ASSERT (SELECT count(*) FROM routing.route_epochs) = 3, 'routing.route_epochs must hold its three counters';
    FOREACH f IN ARRAY ARRAY[
        'routing._bump_route_epoch()',
        'routing._route_epochs()',
        'routing._build_route_plan(text, timestamptz)',
        'routing._explain_from_plan(numeric, text, int, int, timestamptz)',
        'routing._explain_from_plan(numeric, text, int, int, timestamptz, uuid, text)',
        'routing._explain_from_catalog(numeric, text, int, int, timestamptz, uuid, text)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT NOT pg_catalog.has_function_privilege('routing_app', to_regprocedure(f), 'EXECUTE'),
               f || ' must be private';
    END LOOP;
    -- The stages' old names are gone.
    FOREACH f IN ARRAY ARRAY[
        'routing._planned_explanation(numeric, text, int, int, timestamptz)',
        'routing._planned_explanation(numeric, text, int, int, timestamptz, uuid, text)',
        'routing._route_request_explanation(numeric, text, int, int, timestamptz, uuid, text)'] LOOP
        ASSERT to_regprocedure(f) IS NULL, f || ' is renamed: its old name must be gone';
    END LOOP;
    FOREACH t IN ARRAY ARRAY['models', 'task_floors', 'settings', 'model_task_quality', 'model_cooldowns',
                             'route_snapshots'] LOOP
        ASSERT EXISTS (SELECT FROM pg_catalog.pg_trigger g
                        WHERE g.tgrelid = to_regclass('routing.' || t) AND g.tgname = 'bump_route_epoch'),
               'routing.' || t || ' has no bump_route_epoch trigger';
    END LOOP;
END
$$;

ROLLBACK;
