-- Verify routing_ledger:argument_checks on pg

BEGIN;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'routing._require_not_null(text, text, anyelement)',
        'routing._require_text(text, text, text, int, boolean)',
        'routing._require_int(text, text, bigint, bigint, bigint, boolean)',
        'routing._require_numeric(text, text, numeric, numeric, numeric, boolean)',
        'routing._require_interval(text, text, interval, interval, interval, boolean)',
        'routing._require_timestamp(text, text, timestamptz, timestamptz, timestamptz, boolean)',
        'routing._require_member(text, text, text, text[], boolean)'] LOOP
        ASSERT to_regprocedure(f) IS NOT NULL, f || ' is missing';
        ASSERT NOT pg_catalog.has_function_privilege('public', to_regprocedure(f), 'EXECUTE'),
               f || ' must not be executable by PUBLIC';
    END LOOP;
END
$$;

ROLLBACK;
