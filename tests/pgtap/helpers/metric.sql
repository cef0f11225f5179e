-- pg_temp.metric(name, as_of): one metric's value in routing.integrity_report(as_of); the
-- window ends at the clock's now, not the transaction's, unless as_of is given.
CREATE FUNCTION pg_temp.metric(p_name text, p_as_of timestamptz DEFAULT clock_timestamp()) RETURNS bigint
LANGUAGE sql AS $$
    SELECT value FROM routing.integrity_report(p_as_of) WHERE metric = p_name;
$$;
