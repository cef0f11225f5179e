-- Deploy routing_ledger:model_prices to pg
-- requires: catalog_admin
-- requires: route_snapshots
-- requires: route_plans
-- requires: usage_classes
-- requires: argument_checks
--
-- Versioned prices by token class, and what an attempt costs at them.
--
-- - routing.model_prices holds one row per (model, token class, long-context tier,
--   effective_from); rows are never updated once in force: a new price is a new row.
--   The rate of a (class, min_input_tokens) pair at an instant is its row with the
--   latest effective_from at or before it; for each class, the pair with the largest
--   min_input_tokens at or below the attempt's input_tokens applies to the whole request
--   (a provider's "over 200 k" tier is min_input_tokens 200001). A NULL rate is "no
--   price from then on" (a model un-priced through its catalog columns).
-- - routing.set_model_price adds a row (audited in catalog_changes, via set_model_price);
--   an effective_from in the past is refused (22023): what an attempt was charged never
--   changes. A price announced for later may be corrected before it takes effect (the
--   same key again replaces its rate: nothing was charged at it yet).
-- - The catalog columns routing.models.price_in/out_per_mtok_usd stay: upsert_model and
--   any write of them add the input / output row of tier 0 effective now() (a trigger,
--   so a direct write is priced too), and set_model_price keeps them equal to the tier-0
--   rate in force when it changes that rate now. A model's first price of a class is
--   effective from '-infinity', as the migration below is: the catalog price a model was
--   entered with is the price its history was charged at.
-- - Migration: every price already in the catalog becomes a row effective from
--   '-infinity', so an attempt already in the ledger recomputes to what it was charged
--   (v0.2 charged every attempt at the catalog price); no stored cost is rewritten.
-- - routing._attempt_cost is the one definition of an attempt's cost: uncached input
--   (input_tokens less the three cache classes) at the input rate, each cache class at
--   its own rate or else the request's input rate, output (reasoning included) at the
--   output rate, all at the rates in force at the attempt's created_at and of its tier,
--   summed and rounded once to 10 decimals. NULL when either total is unknown or the
--   model has no input or output rate then: an unknown cost is never 0.
-- - The router reads the input and output rates in force at its instant
--   (routing._catalog_rates); a price row changes the catalog epoch (statement trigger),
--   and a route plan is valid only up to the next effective_from
--   (routing._price_validity).
-- - Precision: every cost and projected cost is rounded to 10 decimal places
--   (routing._projected_cost is redefined here so; it was 6).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- The token classes a price row may name: the one list (CHECK and arguments).
CREATE OR REPLACE FUNCTION routing._token_classes()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['input', 'output', 'cache_read', 'cache_write', 'cache_write_1h']
$$;

CREATE TABLE IF NOT EXISTS routing.model_prices (
    model_slug       text        NOT NULL REFERENCES routing.models (slug) ON DELETE CASCADE,
    token_class      text        NOT NULL
                     CHECK (token_class IN ('input', 'output', 'cache_read', 'cache_write', 'cache_write_1h')),
    usd_per_mtok     numeric     CHECK (usd_per_mtok >= 0 AND usd_per_mtok < 'Infinity'),
    min_input_tokens int         NOT NULL DEFAULT 0 CHECK (min_input_tokens >= 0),
    effective_from   timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_slug, token_class, min_input_tokens, effective_from)
);
COMMENT ON TABLE routing.model_prices IS
    'Versioned prices per model and token class (input, output, cache_read, cache_write, cache_write_1h), USD per million tokens. The rate of a (class, min_input_tokens) pair at t is its row with the latest effective_from <= t; the pair with the largest min_input_tokens <= the request''s input tokens applies to the whole request. Written by set_model_price and by upsert_model (input and output, tier 0); never updated once in force.';
-- The router's plans are valid between two price changes: the latest effective_from at or
-- before an instant and the first after it, two index probes.
CREATE INDEX IF NOT EXISTS model_prices_effective_from ON routing.model_prices (effective_from);

-- Every catalog price that exists covers the history already in the ledger.
INSERT INTO routing.model_prices (model_slug, token_class, usd_per_mtok, min_input_tokens, effective_from)
SELECT m.slug, c.token_class, CASE WHEN c.price >= 0 THEN c.price END, 0, '-infinity'
  FROM routing.models m
 CROSS JOIN LATERAL (VALUES ('input', m.price_in_per_mtok_usd), ('output', m.price_out_per_mtok_usd)) c (token_class, price)
 WHERE c.price IS NOT NULL
ON CONFLICT DO NOTHING;

-- The audit records price rows too.
ALTER TABLE routing.catalog_changes
    DROP CONSTRAINT IF EXISTS catalog_changes_table_name_check,
    ADD CONSTRAINT catalog_changes_table_name_check
        CHECK (table_name IN ('models', 'agents', 'task_floors', 'model_prices')) NOT VALID;

CREATE OR REPLACE TRIGGER catalog_audit
    AFTER INSERT OR UPDATE OR DELETE ON routing.model_prices
    FOR EACH ROW EXECUTE FUNCTION routing._audit_catalog_change('model_slug');

-- A price row is a catalog change for the router's plans.
DROP TRIGGER IF EXISTS bump_route_epoch ON routing.model_prices;
CREATE TRIGGER bump_route_epoch BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON routing.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch('catalog');

-- The catalog columns write the tier-0 input and output rows. Effective now(), so an
-- attempt created in the same transaction is charged at it; the same instant again (two
-- writes in one transaction) replaces that row, which nothing committed was charged at.
CREATE OR REPLACE FUNCTION routing._sync_model_prices()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT v.token_class, CASE WHEN v.price >= 0 THEN v.price END AS price
               FROM (VALUES ('input', NEW.price_in_per_mtok_usd), ('output', NEW.price_out_per_mtok_usd)) v (token_class, price)
    LOOP
        IF NOT EXISTS (SELECT FROM routing.model_prices p
                        WHERE p.model_slug = NEW.slug AND p.token_class = c.token_class AND p.min_input_tokens = 0) THEN
            IF c.price IS NOT NULL THEN
                INSERT INTO routing.model_prices (model_slug, token_class, usd_per_mtok, min_input_tokens, effective_from)
                VALUES (NEW.slug, c.token_class, c.price, 0, '-infinity');
            END IF;
        ELSIF (SELECT p.usd_per_mtok FROM routing.model_prices p
                WHERE p.model_slug = NEW.slug AND p.token_class = c.token_class AND p.min_input_tokens = 0
                  AND p.effective_from <= now()
                ORDER BY p.effective_from DESC LIMIT 1) IS DISTINCT FROM c.price THEN
            INSERT INTO routing.model_prices AS p (model_slug, token_class, usd_per_mtok, min_input_tokens, effective_from)
            VALUES (NEW.slug, c.token_class, c.price, 0, now())
            ON CONFLICT (model_slug, token_class, min_input_tokens, effective_from)
            DO UPDATE SET usd_per_mtok = excluded.usd_per_mtok;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS sync_model_prices ON routing.models;
CREATE TRIGGER sync_model_prices
    AFTER INSERT OR UPDATE OF price_in_per_mtok_usd, price_out_per_mtok_usd ON routing.models
    FOR EACH ROW EXECUTE FUNCTION routing._sync_model_prices();

-- The rate of one class in force at p_at for a request of p_input_tokens input tokens:
-- among the class's rows at or below that tier and in force by then, the largest tier,
-- then the latest effective_from (the contract's rule, as one backward index probe on the
-- primary key). NULL: no rate of that class (or a NULL rate: un-priced).
-- PL/pgSQL (its plan is cached per session), no SET clause (the write path calls it per
-- attempt), every name qualified.
CREATE OR REPLACE FUNCTION routing._rate_in_force(
    p_model_slug text, p_token_class text, p_at timestamptz, p_input_tokens int
) RETURNS numeric
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN (SELECT p.usd_per_mtok
              FROM routing.model_prices p
             WHERE p.model_slug = p_model_slug AND p.token_class = p_token_class
               AND p.min_input_tokens <= coalesce(p_input_tokens, 0) AND p.effective_from <= p_at
             ORDER BY p.min_input_tokens DESC, p.effective_from DESC
             LIMIT 1);
END
$$;

-- Every class's rate at once (for reports: the demo's spend by class).
CREATE OR REPLACE FUNCTION routing._rates_in_force(
    p_model_slug text, p_at timestamptz, p_input_tokens int,
    OUT input numeric, OUT output numeric, OUT cache_read numeric, OUT cache_write numeric,
    OUT cache_write_1h numeric
)
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
BEGIN
    input          := routing._rate_in_force(p_model_slug, 'input', p_at, p_input_tokens);
    output         := routing._rate_in_force(p_model_slug, 'output', p_at, p_input_tokens);
    cache_read     := routing._rate_in_force(p_model_slug, 'cache_read', p_at, p_input_tokens);
    cache_write    := routing._rate_in_force(p_model_slug, 'cache_write', p_at, p_input_tokens);
    cache_write_1h := routing._rate_in_force(p_model_slug, 'cache_write_1h', p_at, p_input_tokens);
END
$$;

-- Every model's input and output rates in force at p_at for a request of p_input_tokens
-- input tokens: what the router ranks and projects with. A SQL function, inlined into
-- the router's query.
CREATE OR REPLACE FUNCTION routing._catalog_rates(p_at timestamptz, p_input_tokens int)
RETURNS TABLE (model_slug text, input numeric, output numeric)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    -- Per (model, class): the largest tier in force, then its latest row (routing._rate_in_force).
    SELECT t.model_slug,
           max(t.usd_per_mtok) FILTER (WHERE t.token_class = 'input'),
           max(t.usd_per_mtok) FILTER (WHERE t.token_class = 'output')
      FROM (SELECT DISTINCT ON (v.model_slug, v.token_class) v.model_slug, v.token_class, v.usd_per_mtok
              FROM routing.model_prices v
             WHERE v.token_class IN ('input', 'output') AND v.effective_from <= p_at
               AND v.min_input_tokens <= coalesce(p_input_tokens, 0)
             ORDER BY v.model_slug, v.token_class, v.min_input_tokens DESC, v.effective_from DESC) t
     GROUP BY t.model_slug
$$;

-- The interval of instants around p_as_of over which no price changes: a route plan
-- built at p_as_of holds only inside it.
CREATE OR REPLACE FUNCTION routing._price_validity(
    p_as_of timestamptz, OUT valid_from timestamptz, OUT valid_until timestamptz
)
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
BEGIN
    valid_from  := coalesce((SELECT max(p.effective_from) FROM routing.model_prices p WHERE p.effective_from <= p_as_of),
                            '-infinity');
    valid_until := coalesce((SELECT min(p.effective_from) FROM routing.model_prices p WHERE p.effective_from > p_as_of),
                            'infinity');
END
$$;

-- What an attempt costs: see the header. Rounded once, to 10 decimals.
CREATE OR REPLACE FUNCTION routing._attempt_cost(
    p_model_slug            text,
    p_created_at            timestamptz,
    p_input_tokens          int,
    p_output_tokens         int,
    p_cache_read_tokens     int DEFAULT NULL,
    p_cache_write_tokens    int DEFAULT NULL,
    p_cache_write_1h_tokens int DEFAULT NULL
) RETURNS numeric
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
    v_cr  bigint := coalesce(p_cache_read_tokens, 0)::bigint;
    v_cw  bigint := coalesce(p_cache_write_tokens, 0)::bigint;
    v_ch  bigint := coalesce(p_cache_write_1h_tokens, 0)::bigint;
    v_in  numeric;
    v_out numeric;
    v_rcr numeric;
    v_rcw numeric;
    v_rch numeric;
BEGIN
    IF p_input_tokens IS NULL OR p_output_tokens IS NULL THEN
        RETURN NULL;
    END IF;
    -- One backward index probe per class used (routing._rate_in_force's query, written out
    -- to save a call each; measured: a statement with the cache probes under CASE costs
    -- twice this one): input and output always, in one statement ...
    SELECT (SELECT p.usd_per_mtok FROM routing.model_prices p
             WHERE p.model_slug = p_model_slug AND p.token_class = 'input'
               AND p.min_input_tokens <= p_input_tokens AND p.effective_from <= p_created_at
             ORDER BY p.min_input_tokens DESC, p.effective_from DESC LIMIT 1),
           (SELECT p.usd_per_mtok FROM routing.model_prices p
             WHERE p.model_slug = p_model_slug AND p.token_class = 'output'
               AND p.min_input_tokens <= p_input_tokens AND p.effective_from <= p_created_at
             ORDER BY p.min_input_tokens DESC, p.effective_from DESC LIMIT 1)
      INTO v_in, v_out;
    -- ... and the cache classes only for an attempt that has cache tokens.
    IF v_cr + v_cw + v_ch > 0 THEN
        v_rcr := routing._rate_in_force(p_model_slug, 'cache_read', p_created_at, p_input_tokens);
        v_rcw := routing._rate_in_force(p_model_slug, 'cache_write', p_created_at, p_input_tokens);
        v_rch := routing._rate_in_force(p_model_slug, 'cache_write_1h', p_created_at, p_input_tokens);
    END IF;
    RETURN pg_catalog.round(((p_input_tokens - v_cr - v_cw - v_ch) * v_in
                             + v_cr * coalesce(v_rcr, v_in)
                             + v_cw * coalesce(v_rcw, v_in)
                             + v_ch * coalesce(v_rch, v_in)
                             + p_output_tokens::bigint * v_out) / 1e6, 10);
END
$$;

-- A projected cost as the router computes it: 10 decimals now (was 6).
CREATE OR REPLACE FUNCTION routing._projected_cost(
    p_input_tokens int, p_max_tokens int, p_price_in numeric, p_price_out numeric
) RETURNS numeric
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(p_input_tokens * p_price_in / 1e6 + p_max_tokens * p_price_out / 1e6, 10)
$$;

-- p_usage of complete_decision and fail_inference, key by key: any of the integer
-- classes (0..2^31-1) and provider_cost_usd (a number >= 0); a JSON null is "not
-- reported". With the totals given, the parts must fit in them. 22023 naming the key.
CREATE OR REPLACE FUNCTION routing._usage_parts(
    p_fn text, p_usage jsonb, p_input_tokens int DEFAULT NULL, p_output_tokens int DEFAULT NULL,
    OUT cache_read_tokens int, OUT cache_write_tokens int, OUT cache_write_1h_tokens int,
    OUT reasoning_tokens int, OUT provider_cost_usd numeric
)
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    k text;
    v jsonb;
    n numeric;
BEGIN
    IF p_usage IS NULL OR jsonb_typeof(p_usage) = 'null' THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p_usage) <> 'object' THEN
        RAISE EXCEPTION '%: p_usage must be a JSON object, got a %', p_fn, jsonb_typeof(p_usage)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_usage) e LOOP
        IF k NOT IN ('cache_read_tokens', 'cache_write_tokens', 'cache_write_1h_tokens', 'reasoning_tokens',
                     'provider_cost_usd') THEN
            RAISE EXCEPTION '%: p_usage has an unknown key %', p_fn, quote_literal(left(k, 64))
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, provider_cost_usd';
        END IF;
        CONTINUE WHEN jsonb_typeof(v) = 'null';
        IF jsonb_typeof(v) <> 'number' THEN
            RAISE EXCEPTION '%: p_usage.% must be a number, got %', p_fn, k, left(v::text, 64)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        n := v::text::numeric;
        IF k = 'provider_cost_usd' THEN
            IF n < 0 THEN
                RAISE EXCEPTION '%: p_usage.provider_cost_usd must be >= 0, got %', p_fn, n
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            provider_cost_usd := n;
            CONTINUE;
        END IF;
        IF n <> trunc(n) OR n < 0 OR n > 2147483647 THEN
            RAISE EXCEPTION '%: p_usage.% must be an integer in 0..2147483647, got %', p_fn, k, left(v::text, 64)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        CASE k
            WHEN 'cache_read_tokens' THEN cache_read_tokens := n::int;
            WHEN 'cache_write_tokens' THEN cache_write_tokens := n::int;
            WHEN 'cache_write_1h_tokens' THEN cache_write_1h_tokens := n::int;
            ELSE reasoning_tokens := n::int;
        END CASE;
    END LOOP;
    PERFORM routing._require_usage_within(p_fn, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                                          reasoning_tokens, p_input_tokens, p_output_tokens);
END
$$;

-- The parts within their totals (a NULL total: not checked here). 22023.
CREATE OR REPLACE FUNCTION routing._require_usage_within(
    p_fn text, p_cache_read_tokens int, p_cache_write_tokens int, p_cache_write_1h_tokens int,
    p_reasoning_tokens int, p_input_tokens int, p_output_tokens int
) RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF coalesce(p_cache_read_tokens, 0)::bigint + coalesce(p_cache_write_tokens, 0) + coalesce(p_cache_write_1h_tokens, 0)
       > p_input_tokens THEN
        RAISE EXCEPTION '%: p_usage cache tokens (read %, write %, write_1h %) exceed the input tokens %', p_fn,
                        coalesce(p_cache_read_tokens, 0), coalesce(p_cache_write_tokens, 0),
                        coalesce(p_cache_write_1h_tokens, 0), p_input_tokens
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'input_tokens is the total of every input token, cache reads and writes included';
    END IF;
    IF p_reasoning_tokens > p_output_tokens THEN
        RAISE EXCEPTION '%: p_usage.reasoning_tokens % exceeds the output tokens %', p_fn, p_reasoning_tokens, p_output_tokens
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'output_tokens is the total of every output token, reasoning included';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION routing.set_model_price(
    p_slug             text,
    p_token_class      text,
    p_usd_per_mtok     numeric,
    p_effective_from   timestamptz DEFAULT now(),
    p_min_input_tokens int DEFAULT 0
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c_fn CONSTANT text := 'set_model_price';
    v_via    text;
    v_old    numeric;
    v_found  boolean;
    v_result text;
BEGIN
    PERFORM routing._require_text(c_fn, 'p_slug', p_slug);
    PERFORM routing._require_member(c_fn, 'p_token_class', p_token_class, routing._token_classes());
    PERFORM routing._require_numeric(c_fn, 'p_usd_per_mtok', p_usd_per_mtok, 0, 1e9);
    PERFORM routing._require_timestamp(c_fn, 'p_effective_from', p_effective_from);
    PERFORM routing._require_int(c_fn, 'p_min_input_tokens', p_min_input_tokens);
    IF p_effective_from < now() THEN
        RAISE EXCEPTION '%: p_effective_from % is in the past', c_fn, p_effective_from
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'a price is never back-dated: what an attempt was charged does not change; add the new price effective now or later';
    END IF;
    IF NOT EXISTS (SELECT FROM routing.models m WHERE m.slug = p_slug) THEN
        RAISE EXCEPTION '%: unknown model %', c_fn, quote_literal(p_slug) USING ERRCODE = 'no_data_found';
    END IF;

    -- The audit trigger reads who called from this setting, for this call only.
    v_via := current_setting('routing.catalog_via', true);
    PERFORM set_config('routing.catalog_via', c_fn, true);

    SELECT p.usd_per_mtok, p.effective_from = p_effective_from INTO v_old, v_found
      FROM routing.model_prices p
     WHERE p.model_slug = p_slug AND p.token_class = p_token_class AND p.min_input_tokens = p_min_input_tokens
       AND p.effective_from <= p_effective_from
     ORDER BY p.effective_from DESC
     LIMIT 1;
    v_found := coalesce(v_found, false);
    -- The rate already in force then, and nothing announced after it: a repeat, no row.
    IF v_old = p_usd_per_mtok
       AND NOT EXISTS (SELECT FROM routing.model_prices p
                        WHERE p.model_slug = p_slug AND p.token_class = p_token_class
                          AND p.min_input_tokens = p_min_input_tokens AND p.effective_from > p_effective_from) THEN
        v_result := 'unchanged';
    ELSE
        -- Same key again: a price not yet in force (or set earlier in this transaction) is
        -- corrected; nothing was charged at it.
        INSERT INTO routing.model_prices AS p (model_slug, token_class, usd_per_mtok, min_input_tokens, effective_from)
        VALUES (p_slug, p_token_class, p_usd_per_mtok, p_min_input_tokens, p_effective_from)
        ON CONFLICT (model_slug, token_class, min_input_tokens, effective_from)
        DO UPDATE SET usd_per_mtok = excluded.usd_per_mtok;
        v_result := CASE WHEN v_found THEN 'updated' ELSE 'inserted' END;
        -- The catalog columns show the tier-0 input and output rates in force.
        IF p_min_input_tokens = 0 AND p_effective_from <= now() AND p_token_class = 'input' THEN
            UPDATE routing.models m SET price_in_per_mtok_usd = p_usd_per_mtok
             WHERE m.slug = p_slug AND m.price_in_per_mtok_usd IS DISTINCT FROM p_usd_per_mtok;
        ELSIF p_min_input_tokens = 0 AND p_effective_from <= now() AND p_token_class = 'output' THEN
            UPDATE routing.models m SET price_out_per_mtok_usd = p_usd_per_mtok
             WHERE m.slug = p_slug AND m.price_out_per_mtok_usd IS DISTINCT FROM p_usd_per_mtok;
        END IF;
    END IF;

    PERFORM set_config('routing.catalog_via', coalesce(v_via, ''), true);
    RETURN v_result;
END
$$;

COMMENT ON FUNCTION routing.set_model_price(text, text, numeric, timestamptz, int) IS
    'Adds a price: p_usd_per_mtok per million tokens of p_token_class (input, output, cache_read, cache_write, cache_write_1h) for requests of at least p_min_input_tokens input tokens (a long-context tier; 0: every request), in force from p_effective_from (default now; later is fine) until a later row of the same class and tier. Attempts are charged at the rates in force at their created_at, so nothing already charged changes. Audited in catalog_changes. Returns inserted, updated (a price not yet in force corrected) or unchanged (that rate is already in force then, and nothing later is announced: no row). 22023 on a bad argument (an effective_from in the past included), P0002 on an unknown model.';
COMMENT ON FUNCTION routing._attempt_cost(text, timestamptz, int, int, int, int, int) IS
    'An attempt''s cost: uncached input at the input rate, each cache class at its rate (else the input rate), output (reasoning included) at the output rate, at the rates in force at p_created_at for the tier of p_input_tokens, rounded to 10 decimals; NULL when a total or the input/output rate is unknown.';

REVOKE ALL ON routing.model_prices FROM PUBLIC;
GRANT SELECT ON routing.model_prices TO routing_readonly;
REVOKE ALL ON FUNCTION routing._token_classes() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._sync_model_prices() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._rate_in_force(text, text, timestamptz, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._rates_in_force(text, timestamptz, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._catalog_rates(timestamptz, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._price_validity(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._attempt_cost(text, timestamptz, int, int, int, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._usage_parts(text, jsonb, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_usage_within(text, int, int, int, int, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.set_model_price(text, text, numeric, timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.set_model_price(text, text, numeric, timestamptz, int) TO routing_admin;

COMMIT;
