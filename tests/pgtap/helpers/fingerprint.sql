-- pg_temp.fingerprint(): a digest of every ledger, cooldown and daily-spend row, the ledger
-- and cooldown rows *with their ctid*: any UPDATE, even one that rewrites the same values,
-- moves the row and changes the digest. "Writes nothing" is: the same fingerprint before
-- and after.
CREATE FUNCTION pg_temp.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(coalesce(string_agg(x, '|' ORDER BY x), ''))
      FROM (SELECT 'o' || o.ctid::text || o::text FROM routing.routing_outcomes o
            UNION ALL
            SELECT 'i' || i.ctid::text || i::text FROM routing.inferences i
            UNION ALL
            SELECT 'c' || c.ctid::text || c::text FROM routing.model_cooldowns c
            UNION ALL
            SELECT 'b' || b::text FROM routing.budget_spend b) s (x);
$$;
