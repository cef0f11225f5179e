-- pgTAP for the argument_checks change: the private routing._require_* helpers.
--
-- Each helper returns nothing for an acceptable value and raises 22023 with a message
-- naming the function and the argument otherwise; none is executable by PUBLIC.
BEGIN;
SELECT plan(48);

\ir helpers/error_of.sql

------------------------------------------------------------------------- structure

SELECT has_function('routing', '_require_not_null', ARRAY['text', 'text', 'anyelement'], '_require_not_null exists');
SELECT has_function('routing', '_require_text', ARRAY['text', 'text', 'text', 'integer', 'boolean'], '_require_text exists');
SELECT has_function('routing', '_require_int', ARRAY['text', 'text', 'bigint', 'bigint', 'bigint', 'boolean'], '_require_int exists');
SELECT has_function('routing', '_require_numeric', ARRAY['text', 'text', 'numeric', 'numeric', 'numeric', 'boolean'], '_require_numeric exists');
SELECT has_function('routing', '_require_interval', ARRAY['text', 'text', 'interval', 'interval', 'interval', 'boolean'], '_require_interval exists');
SELECT has_function('routing', '_require_timestamp', ARRAY['text', 'text', 'timestamp with time zone', 'timestamp with time zone', 'timestamp with time zone', 'boolean'], '_require_timestamp exists');
SELECT has_function('routing', '_require_member', ARRAY['text', 'text', 'text', 'text[]', 'boolean'], '_require_member exists');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace AND p.proname LIKE '\_require\_%'
         AND (has_function_privilege('public', p.oid, 'EXECUTE')
              OR has_function_privilege('routing_app', p.oid, 'EXECUTE')
              OR has_function_privilege('routing_ops', p.oid, 'EXECUTE')
              OR has_function_privilege('routing_judge', p.oid, 'EXECUTE')
              OR p.prosecdef)$$,
    'the helpers are owner-only and SECURITY INVOKER'
);

------------------------------------------------------------------------ not null

SELECT lives_ok($$SELECT routing._require_not_null('f', 'p_x', 1::bigint)$$, 'not_null: a value passes');
SELECT is(pg_temp.error_of($$SELECT routing._require_not_null('f', 'p_x', NULL::uuid)$$),
    '22023: f: p_x must not be NULL', 'not_null: NULL is 22023 naming function and argument');

---------------------------------------------------------------------------- text

SELECT lives_ok($$SELECT routing._require_text('f', 'p_s', 'abc')$$, 'text: a short string passes');
SELECT lives_ok($$SELECT routing._require_text('f', 'p_s', repeat('x', 255))$$, 'text: 255 characters pass by default');
SELECT lives_ok($$SELECT routing._require_text('f', 'p_s', NULL, 10, true)$$, 'text: NULL passes when nullable');
SELECT is(pg_temp.error_of($$SELECT routing._require_text('f', 'p_s', NULL)$$),
    '22023: f: p_s must be a non-empty string', 'text: NULL is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_text('f', 'p_s', '')$$),
    '22023: f: p_s must be a non-empty string', 'text: empty is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_text('f', 'p_s', E' \t ', 10, true)$$),
    '22023: f: p_s must be a non-empty string', 'text: blank is 22023 even when nullable');
SELECT is(pg_temp.error_of($$SELECT routing._require_text('f', 'p_s', repeat('x', 256))$$),
    '22023: f: p_s must be at most 255 characters, got 256', 'text: 256 characters is 22023, the value is not echoed');
SELECT is(pg_temp.error_of($$SELECT routing._require_text('f', 'p_s', repeat('é', 65), 64)$$),
    '22023: f: p_s must be at most 64 characters, got 65', 'text: the bound counts characters, not bytes');
SELECT lives_ok($$SELECT routing._require_text('f', 'p_s', repeat('é', 64), 64)$$, 'text: 64 two-byte characters pass a 64 bound');

----------------------------------------------------------------------------- int

SELECT lives_ok($$SELECT routing._require_int('f', 'p_n', 0)$$, 'int: 0 passes (non-negative by default)');
SELECT lives_ok($$SELECT routing._require_int('f', 'p_n', 2147483647)$$, 'int: the int maximum passes');
SELECT lives_ok($$SELECT routing._require_int('f', 'p_n', NULL, 0, 10, true)$$, 'int: NULL passes when nullable');
SELECT is(pg_temp.error_of($$SELECT routing._require_int('f', 'p_n', -1)$$),
    '22023: f: p_n must be between 0 and 2147483647, got -1', 'int: negative is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_int('f', 'p_n', NULL)$$),
    '22023: f: p_n must not be NULL', 'int: NULL is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_int('f', 'p_n', 600, 100, 599)$$),
    '22023: f: p_n must be between 100 and 599, got 600', 'int: above p_max is 22023');

------------------------------------------------------------------------- numeric

SELECT lives_ok($$SELECT routing._require_numeric('f', 'p_q', 0.5, 0, 1)$$, 'numeric: in range passes');
SELECT lives_ok($$SELECT routing._require_numeric('f', 'p_q', 1e30)$$, 'numeric: unbounded by default, any finite value');
SELECT alike(pg_temp.error_of($$SELECT routing._require_numeric('f', 'p_q', 'NaN')$$),
    '22023: f: p_q must be a finite number%', 'numeric: NaN is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing._require_numeric('f', 'p_q', 'Infinity')$$),
    '22023: f: p_q must be a finite number%', 'numeric: Infinity is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing._require_numeric('f', 'p_q', '-Infinity', 0)$$),
    '22023: f: p_q must be a finite number%', 'numeric: -Infinity is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_numeric('f', 'p_q', 1.5, 0, 1)$$),
    '22023: f: p_q must be between 0 and 1, got 1.5', 'numeric: above p_max is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_numeric('f', 'p_q', -1, 0)$$),
    '22023: f: p_q must be between 0 and +inf, got -1', 'numeric: below p_min is 22023');

------------------------------------------------------------------------ interval

SELECT lives_ok($$SELECT routing._require_interval('f', 'p_i', '1 hour')$$, 'interval: 1 hour passes');
SELECT lives_ok($$SELECT routing._require_interval('f', 'p_i', '100 years')$$, 'interval: 100 years passes');
SELECT is(pg_temp.error_of($$SELECT routing._require_interval('f', 'p_i', '-1 hour')$$),
    '22023: f: p_i must be a non-negative interval, got -01:00:00', 'interval: negative is 22023 (v0.1''s wording)');
SELECT alike(pg_temp.error_of($$SELECT routing._require_interval('f', 'p_i', '178000000 years')$$),
    '22023: f: p_i must be an interval of at most 100 years, got %', 'interval: near the type''s limit is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_interval('f', 'p_i', NULL)$$),
    '22023: f: p_i must not be NULL', 'interval: NULL is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing._require_interval('f', 'p_i', '1 second', '2 seconds', '1 hour')$$),
    '22023: f: p_i must be an interval of at least %', 'interval: below a positive p_min is 22023');

----------------------------------------------------------------------- timestamp

SELECT lives_ok($$SELECT routing._require_timestamp('f', 'p_t', now())$$, 'timestamp: now passes');
SELECT alike(pg_temp.error_of($$SELECT routing._require_timestamp('f', 'p_t', 'infinity')$$),
    '22023: f: p_t must be a finite timestamp between %', 'timestamp: infinity is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing._require_timestamp('f', 'p_t', '-infinity')$$),
    '22023: f: p_t must be a finite timestamp between %', 'timestamp: -infinity is 22023');
SELECT alike(pg_temp.error_of($$SELECT routing._require_timestamp('f', 'p_t', '294276-12-31 00:00:00+00')$$),
    '22023: f: p_t must be a finite timestamp between %', 'timestamp: the type''s maximum is 22023');
SELECT is(pg_temp.error_of($$SELECT routing._require_timestamp('f', 'p_t', NULL)$$),
    '22023: f: p_t must not be NULL', 'timestamp: NULL is 22023');
SELECT lives_ok(
    $$SELECT '9999-12-31 00:00:00+00'::timestamptz + interval '100 years', '1970-01-01 00:00:00+00'::timestamptz - interval '100 years'$$,
    'the default bounds leave room for 100 years either side (no 22008)');

-------------------------------------------------------------------------- member

SELECT lives_ok($$SELECT routing._require_member('f', 'p_c', 'b', ARRAY['a', 'b'])$$, 'member: a member passes');
SELECT is(pg_temp.error_of($$SELECT routing._require_member('f', 'p_c', 'z', ARRAY['a', 'b'])$$),
    '22023: f: unknown p_c ''z''', 'member: a non-member is 22023 naming the argument');
SELECT is(pg_temp.error_of($$SELECT routing._require_member('f', 'p_c', repeat('z', 1000), ARRAY['a'])$$),
    '22023: f: unknown p_c ''' || repeat('z', 64) || '''…', 'member: a long non-member is shown cut to 64 characters');
SELECT throws_ok($$SELECT routing._require_member('f', 'p_c', NULL, ARRAY['a', 'b'])$$,
    '22023', 'f: p_c must not be NULL', 'member: NULL is 22023');

SELECT * FROM finish();
ROLLBACK;
