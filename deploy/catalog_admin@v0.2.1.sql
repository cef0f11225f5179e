-- Deploy routing_ledger:catalog_admin to pg
-- requires: catalog
-- requires: argument_checks
-- requires: endpoints
-- requires: task_endpoints
--
-- The catalog's write interface. Prices decide what every request costs and floors
-- which model may answer, so nobody should change them by writing tables as the owner:
-- the role routing_admin may call upsert_model, set_model_enabled, upsert_agent and
-- set_task_floor and nothing else (no table privilege at all). Each function checks
-- every argument first (22023, naming it), then writes one row in one statement, and
-- answers 'inserted', 'updated' or 'unchanged' (a repeat of the same call writes
-- nothing and leaves no audit row).
--
-- The audit is a row trigger on models, agents and task_floors, so it records every
-- change, an owner's direct write included (via = 'direct'), not only those made
-- through the functions: who (session_user, the login role, which stays the caller
-- inside a SECURITY DEFINER function where current_user is the owner), when, which
-- function, and the row before and after as jsonb. An UPDATE that changes nothing is
-- not recorded. routing.catalog_changes is written only by the trigger and read by
-- routing_readonly.
--
-- The role is cluster-wide: created only when missing, and then remembered in
-- routing._created_roles, so that revert drops it only if this deploy created it.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'routing_admin') THEN
        CREATE ROLE routing_admin NOLOGIN;
        INSERT INTO routing._created_roles (rolname) VALUES ('routing_admin') ON CONFLICT DO NOTHING;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA routing TO routing_admin;

CREATE TABLE IF NOT EXISTS routing.catalog_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    -- The routing function that made the change, or 'direct' for a table write.
    via        text NOT NULL,
    table_name text NOT NULL CHECK (table_name IN ('models', 'agents', 'task_floors')),
    operation  text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    row_key    text NOT NULL,
    before     jsonb,
    after      jsonb,
    CONSTRAINT catalog_change_images
        CHECK ((before IS NULL) = (operation = 'INSERT') AND (after IS NULL) = (operation = 'DELETE'))
);
COMMENT ON TABLE routing.catalog_changes IS
    'Audit of every change to routing.models, routing.agents and routing.task_floors: who (session_user), when, via which function (or direct), the row''s key, and the row before and after as jsonb. Written only by the catalog_audit triggers.';

CREATE INDEX IF NOT EXISTS catalog_changes_row
    ON routing.catalog_changes (table_name, row_key, id);

-- An endpoint is a value of the domain routing.endpoint (its CHECK is the one list);
-- a value outside it is a bad argument (22023), not a constraint violation.
CREATE OR REPLACE FUNCTION routing._require_endpoint(p_fn text, p_arg text, p_value text)
RETURNS void
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_endpoint routing.endpoint;
BEGIN
    PERFORM routing._require_not_null(p_fn, p_arg, p_value);
    v_endpoint := p_value::routing.endpoint;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION '%: unknown % %', p_fn, p_arg, pg_catalog.quote_literal(pg_catalog.left(p_value, 64))
        USING ERRCODE = 'invalid_parameter_value', HINT = 'a routing.endpoint: chat or embeddings';
END
$$;

-- TG_ARGV[0] names the table's key column.
CREATE OR REPLACE FUNCTION routing._audit_catalog_change()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_before jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    v_after  jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
BEGIN
    IF v_before = v_after THEN
        RETURN NULL;
    END IF;
    INSERT INTO routing.catalog_changes (changed_by, via, table_name, operation, row_key, before, after)
    VALUES (session_user,
            coalesce(nullif(current_setting('routing.catalog_via', true), ''), 'direct'),
            TG_TABLE_NAME, TG_OP, coalesce(v_after, v_before) ->> TG_ARGV[0], v_before, v_after);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER catalog_audit
    AFTER INSERT OR UPDATE OR DELETE ON routing.models
    FOR EACH ROW EXECUTE FUNCTION routing._audit_catalog_change('slug');
CREATE OR REPLACE TRIGGER catalog_audit
    AFTER INSERT OR UPDATE OR DELETE ON routing.agents
    FOR EACH ROW EXECUTE FUNCTION routing._audit_catalog_change('id');
CREATE OR REPLACE TRIGGER catalog_audit
    AFTER INSERT OR UPDATE OR DELETE ON routing.task_floors
    FOR EACH ROW EXECUTE FUNCTION routing._audit_catalog_change('task_type');

-- Each function names itself to the trigger in its SET clause (routing.catalog_via),
-- which holds only for the call: a direct write after one in the same transaction is
-- still recorded as direct.

CREATE OR REPLACE FUNCTION routing.upsert_model(
    p_slug                   text,
    p_provider               text,
    p_provider_model         text,
    p_price_in_per_mtok_usd  numeric,
    p_price_out_per_mtok_usd numeric,
    p_q_prior                numeric,
    p_m_allowed              boolean,
    p_endpoint               text    DEFAULT 'chat',
    p_enabled                boolean DEFAULT true,
    p_expected_latency_ms    int     DEFAULT NULL,
    p_agentic_index          numeric DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c_fn CONSTANT text := 'upsert_model';
    v_inserted boolean;
BEGIN
    PERFORM routing._require_text(c_fn, 'p_slug', p_slug);
    PERFORM routing._require_text(c_fn, 'p_provider', p_provider);
    PERFORM routing._require_text(c_fn, 'p_provider_model', p_provider_model);
    -- NULL or 0: not enrolled (the router drops it); negative is never a price.
    PERFORM routing._require_numeric(c_fn, 'p_price_in_per_mtok_usd', p_price_in_per_mtok_usd, 0, NULL, true);
    PERFORM routing._require_numeric(c_fn, 'p_price_out_per_mtok_usd', p_price_out_per_mtok_usd, 0, NULL, true);
    PERFORM routing._require_numeric(c_fn, 'p_q_prior', p_q_prior, 0, 1, true);
    PERFORM routing._require_not_null(c_fn, 'p_m_allowed', p_m_allowed);
    PERFORM routing._require_endpoint(c_fn, 'p_endpoint', p_endpoint);
    PERFORM routing._require_not_null(c_fn, 'p_enabled', p_enabled);
    PERFORM routing._require_int(c_fn, 'p_expected_latency_ms', p_expected_latency_ms, 0, 2147483647, true);
    PERFORM routing._require_numeric(c_fn, 'p_agentic_index', p_agentic_index, NULL, NULL, true);

    INSERT INTO routing.models AS m
           (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd,
            q_prior, m_allowed, endpoint, enabled, expected_latency_ms, agentic_index)
    VALUES (p_slug, p_provider, p_provider_model, p_price_in_per_mtok_usd, p_price_out_per_mtok_usd,
            p_q_prior, p_m_allowed, p_endpoint, p_enabled, p_expected_latency_ms, p_agentic_index)
    ON CONFLICT (slug) DO UPDATE
       SET provider = excluded.provider, provider_model = excluded.provider_model,
           price_in_per_mtok_usd = excluded.price_in_per_mtok_usd,
           price_out_per_mtok_usd = excluded.price_out_per_mtok_usd,
           q_prior = excluded.q_prior, m_allowed = excluded.m_allowed, endpoint = excluded.endpoint,
           enabled = excluded.enabled, expected_latency_ms = excluded.expected_latency_ms,
           agentic_index = excluded.agentic_index
     WHERE (m.provider, m.provider_model, m.price_in_per_mtok_usd, m.price_out_per_mtok_usd, m.q_prior,
            m.m_allowed, m.endpoint, m.enabled, m.expected_latency_ms, m.agentic_index)
           IS DISTINCT FROM
           (excluded.provider, excluded.provider_model, excluded.price_in_per_mtok_usd,
            excluded.price_out_per_mtok_usd, excluded.q_prior, excluded.m_allowed, excluded.endpoint,
            excluded.enabled, excluded.expected_latency_ms, excluded.agentic_index)
    -- xmax is 0 on a row this statement inserted, the locker's xid on one it updated.
    RETURNING m.xmax = 0 INTO v_inserted;
    RETURN CASE WHEN v_inserted IS NULL THEN 'unchanged' WHEN v_inserted THEN 'inserted' ELSE 'updated' END;
END
$$;

CREATE OR REPLACE FUNCTION routing.set_model_enabled(p_slug text, p_enabled boolean)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c_fn CONSTANT text := 'set_model_enabled';
    v_was boolean;
BEGIN
    PERFORM routing._require_text(c_fn, 'p_slug', p_slug);
    PERFORM routing._require_not_null(c_fn, 'p_enabled', p_enabled);

    SELECT m.enabled INTO v_was FROM routing.models m WHERE m.slug = p_slug FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set_model_enabled: unknown model %', pg_catalog.quote_literal(p_slug)
            USING ERRCODE = 'no_data_found';
    END IF;
    IF v_was = p_enabled THEN
        RETURN 'unchanged';
    END IF;
    UPDATE routing.models m SET enabled = p_enabled WHERE m.slug = p_slug;
    RETURN 'updated';
END
$$;

CREATE OR REPLACE FUNCTION routing.upsert_agent(
    p_id               uuid,
    p_tenant_id        uuid,
    p_name             text,
    p_status           text    DEFAULT 'active',
    p_per_call_cap_usd numeric DEFAULT NULL,
    p_daily_cap_usd    numeric DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c_fn CONSTANT text := 'upsert_agent';
    v_inserted boolean;
BEGIN
    PERFORM routing._require_not_null(c_fn, 'p_id', p_id);
    PERFORM routing._require_not_null(c_fn, 'p_tenant_id', p_tenant_id);
    PERFORM routing._require_text(c_fn, 'p_name', p_name);
    -- The statuses of CHECK agents_status_check (catalog).
    PERFORM routing._require_member(c_fn, 'p_status', p_status, ARRAY['active', 'suspended']);
    -- NULL: no cap.
    PERFORM routing._require_numeric(c_fn, 'p_per_call_cap_usd', p_per_call_cap_usd, 0, NULL, true);
    PERFORM routing._require_numeric(c_fn, 'p_daily_cap_usd', p_daily_cap_usd, 0, NULL, true);

    INSERT INTO routing.agents AS a (id, tenant_id, name, status, per_call_cap_usd, daily_cap_usd)
    VALUES (p_id, p_tenant_id, p_name, p_status, p_per_call_cap_usd, p_daily_cap_usd)
    ON CONFLICT (id) DO UPDATE
       SET tenant_id = excluded.tenant_id, name = excluded.name, status = excluded.status,
           per_call_cap_usd = excluded.per_call_cap_usd, daily_cap_usd = excluded.daily_cap_usd
     WHERE (a.tenant_id, a.name, a.status, a.per_call_cap_usd, a.daily_cap_usd)
           IS DISTINCT FROM
           (excluded.tenant_id, excluded.name, excluded.status, excluded.per_call_cap_usd, excluded.daily_cap_usd)
    RETURNING a.xmax = 0 INTO v_inserted;
    RETURN CASE WHEN v_inserted IS NULL THEN 'unchanged' WHEN v_inserted THEN 'inserted' ELSE 'updated' END;
END
$$;

CREATE OR REPLACE FUNCTION routing.set_task_floor(
    p_task_type   text,
    p_min_quality numeric,
    p_endpoint    text DEFAULT 'chat'
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    c_fn CONSTANT text := 'set_task_floor';
    v_inserted boolean;
BEGIN
    PERFORM routing._require_text(c_fn, 'p_task_type', p_task_type, 64);
    PERFORM routing._require_numeric(c_fn, 'p_min_quality', p_min_quality, 0, 1);
    PERFORM routing._require_endpoint(c_fn, 'p_endpoint', p_endpoint);

    INSERT INTO routing.task_floors AS f (task_type, min_quality, endpoint)
    VALUES (p_task_type, p_min_quality, p_endpoint)
    ON CONFLICT (task_type) DO UPDATE
       SET min_quality = excluded.min_quality, endpoint = excluded.endpoint
     WHERE (f.min_quality, f.endpoint) IS DISTINCT FROM (excluded.min_quality, excluded.endpoint)
    RETURNING f.xmax = 0 INTO v_inserted;
    RETURN CASE WHEN v_inserted IS NULL THEN 'unchanged' WHEN v_inserted THEN 'inserted' ELSE 'updated' END;
END
$$;

-- HOTFIX (docs/hotfixes.md): PostgreSQL 15+ lets only a superuser, or a role granted SET
-- on it, store a placeholder parameter in a function's SET clause. The clauses are added
-- where the deployer may store them, so a superuser's database ends exactly as released;
-- elsewhere the functions run without them (their changes are audited with via = 'direct')
-- until the next catalog_admin change replaces them.
DO $hotfix$
BEGIN
    IF pg_catalog.has_parameter_privilege('routing.catalog_via', 'SET') THEN
        ALTER FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric)
            SET routing.catalog_via = 'upsert_model';
        ALTER FUNCTION routing.set_model_enabled(text, boolean)
            SET routing.catalog_via = 'set_model_enabled';
        ALTER FUNCTION routing.upsert_agent(uuid, uuid, text, text, numeric, numeric)
            SET routing.catalog_via = 'upsert_agent';
        ALTER FUNCTION routing.set_task_floor(text, numeric, text)
            SET routing.catalog_via = 'set_task_floor';
    END IF;
END
$hotfix$;

COMMENT ON FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric) IS
    'Adds the model p_slug or sets every column given (routing_admin). Prices NULL or 0 and q_prior NULL leave it not enrolled. Returns inserted, updated or unchanged; each change is audited in routing.catalog_changes. 22023 on a bad argument: empty slug, provider or provider_model, a negative or non-finite price, q_prior outside 0..1, NULL m_allowed or enabled, an unknown endpoint, a negative expected latency.';
COMMENT ON FUNCTION routing.set_model_enabled(text, boolean) IS
    'Enables or disables the model p_slug (a disabled model is dropped by the router, reason disabled). Returns updated or unchanged; audited. 22023 on a NULL argument, P0002 on an unknown model.';
COMMENT ON FUNCTION routing.upsert_agent(uuid, uuid, text, text, numeric, numeric) IS
    'Adds the agent p_id or sets its tenant, name, status (active, suspended: refused before dispatch) and caps (NULL: none). Returns inserted, updated or unchanged; audited. 22023 on a NULL id or tenant, an empty name, an unknown status, a negative or non-finite cap.';
COMMENT ON FUNCTION routing.set_task_floor(text, numeric, text) IS
    'Sets the quality floor and endpoint of task type p_task_type (adding it if new). Returns inserted, updated or unchanged; audited. 22023 on an empty or over-64-character task type, a min_quality outside 0..1, an unknown endpoint.';

REVOKE ALL ON routing.catalog_changes FROM PUBLIC;
GRANT SELECT ON routing.catalog_changes TO routing_readonly;
REVOKE ALL ON FUNCTION routing._audit_catalog_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._require_endpoint(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.set_model_enabled(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.upsert_agent(uuid, uuid, text, text, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.set_task_floor(text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.upsert_model(text, text, text, numeric, numeric, numeric, boolean, text, boolean, int, numeric) TO routing_admin;
GRANT EXECUTE ON FUNCTION routing.set_model_enabled(text, boolean) TO routing_admin;
GRANT EXECUTE ON FUNCTION routing.upsert_agent(uuid, uuid, text, text, numeric, numeric) TO routing_admin;
GRANT EXECUTE ON FUNCTION routing.set_task_floor(text, numeric, text) TO routing_admin;

COMMIT;
