-- pg_temp.error_of(sql): 'SQLSTATE: message' of what the statement raises, or 'no error'.
-- Included with \ir by the pgTAP files that compare an error's state and text (alike,
-- is) where throws_ok's exact-message match is too strict or too loose.
CREATE FUNCTION pg_temp.error_of(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE p_sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
