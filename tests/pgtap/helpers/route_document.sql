-- A route document's (choose_route, explain_outcome) dropped models with their reasons, by
-- slug, and its candidates with their ranks, in rank order.
CREATE FUNCTION pg_temp.dropped(p_route jsonb) RETURNS TABLE (slug text, reason text)
LANGUAGE sql AS $$
    SELECT d ->> 'slug', d ->> 'reason' FROM jsonb_array_elements(p_route -> 'dropped') d ORDER BY 1;
$$;

CREATE FUNCTION pg_temp.ranked(p_route jsonb) RETURNS TABLE (slug text, rank int)
LANGUAGE sql AS $$
    SELECT c ->> 'slug', (c ->> 'rank')::int FROM jsonb_array_elements(p_route -> 'candidates') c
     ORDER BY (c ->> 'rank')::int;
$$;
