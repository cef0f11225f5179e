-- Deploy routing_ledger:argument_checks to pg
-- requires: schema_roles
--
-- The few shapes every public function's argument checks take, written once. Each
-- helper raises 22023 (invalid_parameter_value) with a message that names the function
-- and the argument ('insert_decision: p_request_id must be …'), and returns nothing
-- when the value is acceptable. Public functions call them first, before reading any
-- row, so a bad argument gets 22023 whatever state the rows are in.
--
-- Bounds exist so that nothing a caller passes can reach an undocumented SQLSTATE: a
-- text longer than a btree row can hold (54000), an interval or a timestamp whose
-- arithmetic overflows (22008), a NaN or an infinity in a price or a score.
-- The default bounds are the package's: text up to 255 characters, ints 0..2^31-1,
-- intervals 0..100 years, timestamps 1970..9999 (so "p_as_of - 100 years" and
-- "p_as_of + 100 years" always fit), numerics finite.
--
-- Private and owner-only: the SECURITY DEFINER functions that call them run as the
-- owner. They carry no SET clause (a SET costs a GUC save and restore on every call,
-- and they run several times per request); every name in them is schema-qualified.
-- The messages never echo a long text argument, only its length.
--
-- Signatures are stable: other changes require this one and call them by position.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- NULL where a value is required.
CREATE OR REPLACE FUNCTION routing._require_not_null(p_fn text, p_arg text, p_value anyelement)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '%: % must not be NULL', p_fn, p_arg USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- A non-blank string of at most p_max_length characters (NULL allowed only when
-- p_nullable).
CREATE OR REPLACE FUNCTION routing._require_text(
    p_fn text, p_arg text, p_value text,
    p_max_length int DEFAULT 255, p_nullable boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '%: % must be a non-empty string', p_fn, p_arg
            USING ERRCODE = 'invalid_parameter_value', HINT = 'got NULL';
    END IF;
    IF pg_catalog.length(p_value) > p_max_length THEN
        RAISE EXCEPTION '%: % must be at most % characters, got %', p_fn, p_arg, p_max_length, pg_catalog.length(p_value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.btrim(p_value, E' \t\r\n') = '' THEN
        RAISE EXCEPTION '%: % must be a non-empty string', p_fn, p_arg USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- An integer within [p_min, p_max] (default: non-negative int).
CREATE OR REPLACE FUNCTION routing._require_int(
    p_fn text, p_arg text, p_value bigint,
    p_min bigint DEFAULT 0, p_max bigint DEFAULT 2147483647, p_nullable boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '%: % must not be NULL', p_fn, p_arg USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value < p_min OR p_value > p_max THEN
        RAISE EXCEPTION '%: % must be between % and %, got %', p_fn, p_arg, p_min, p_max, p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- A finite numeric within [p_min, p_max] (either bound NULL: unbounded on that side).
CREATE OR REPLACE FUNCTION routing._require_numeric(
    p_fn text, p_arg text, p_value numeric,
    p_min numeric DEFAULT NULL, p_max numeric DEFAULT NULL, p_nullable boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '%: % must not be NULL', p_fn, p_arg USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value = 'NaN'::numeric OR p_value IN ('Infinity'::numeric, '-Infinity'::numeric) THEN
        RAISE EXCEPTION '%: % must be a finite number, got %', p_fn, p_arg, p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value < p_min OR p_value > p_max THEN
        RAISE EXCEPTION '%: % must be between % and %, got %', p_fn, p_arg,
                        coalesce(p_min::text, '-inf'), coalesce(p_max::text, '+inf'), p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- An interval within [p_min, p_max] (default: 0 .. 100 years). Comparison is
-- PostgreSQL's (a month counts as 30 days).
CREATE OR REPLACE FUNCTION routing._require_interval(
    p_fn text, p_arg text, p_value interval,
    p_min interval DEFAULT '0', p_max interval DEFAULT '100 years', p_nullable boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '%: % must not be NULL', p_fn, p_arg USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value < p_min THEN
        RAISE EXCEPTION '%: % must be %, got %', p_fn, p_arg,
                        CASE WHEN p_min = interval '0' THEN 'a non-negative interval'
                             ELSE 'an interval of at least ' || p_min::text END,
                        p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value > p_max THEN
        RAISE EXCEPTION '%: % must be an interval of at most %, got %', p_fn, p_arg, p_max, p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- A finite timestamp within [p_min, p_max] (default: 1970-01-01 .. 9999-12-31 UTC).
CREATE OR REPLACE FUNCTION routing._require_timestamp(
    p_fn text, p_arg text, p_value timestamptz,
    p_min timestamptz DEFAULT '1970-01-01 00:00:00+00',
    p_max timestamptz DEFAULT '9999-12-31 00:00:00+00',
    p_nullable boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '%: % must not be NULL', p_fn, p_arg USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value < p_min OR p_value > p_max THEN
        RAISE EXCEPTION '%: % must be a finite timestamp between % and %, got %', p_fn, p_arg, p_min, p_max, p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- One of a vocabulary. The vocabulary is the caller's (a table's keys, a constant),
-- so it is written once where it is defined; this only checks and names it.
CREATE OR REPLACE FUNCTION routing._require_member(
    p_fn text, p_arg text, p_value text, p_allowed text[], p_nullable boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_nullable THEN
            RETURN;
        END IF;
        RAISE EXCEPTION '%: % must not be NULL', p_fn, p_arg
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'one of ' || pg_catalog.array_to_string(p_allowed, ', ');
    END IF;
    IF NOT (p_value = ANY (p_allowed)) THEN
        RAISE EXCEPTION '%: unknown % %', p_fn, p_arg,
                        pg_catalog.quote_literal(pg_catalog.left(p_value, 64))
                        || CASE WHEN pg_catalog.length(p_value) > 64 THEN '…' ELSE '' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'one of ' || pg_catalog.array_to_string(p_allowed, ', ');
    END IF;
END
$$;

REVOKE ALL ON FUNCTION routing._require_not_null(text, text, anyelement) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_text(text, text, text, int, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_int(text, text, bigint, bigint, bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_numeric(text, text, numeric, numeric, numeric, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_interval(text, text, interval, interval, interval, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_timestamp(text, text, timestamptz, timestamptz, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_member(text, text, text, text[], boolean) FROM PUBLIC;

COMMIT;
