-- Deploy routing_ledger:partitioned_ledger to pg
-- requires: outcome_request_keys
-- requires: orphan_judge_index
-- requires: write_path
-- requires: integrity
-- requires: reaper
-- requires: judge_queue
-- requires: repair
-- requires: validate_outcome_requires_inference
-- requires: validate_inference_streaming
-- requires: outcome_stream_index
-- requires: budget_ledger
--
-- Time-partitioned routing_outcomes and inferences (docs/scaling.md, "partitioned
-- ledger"). This change installs the machinery; it does not move a table by itself:
--
--   routing.partition_ledger(p_max_rows)   switches an unpartitioned ledger (a new
--       database, or a small one) to the partitioned layout in one transaction, under a
--       bounded lock; routing.unpartition_ledger() is its exact back-out. A big ledger is
--       not switched inside one transaction (docs/scaling.md: the online migration).
--   routing.create_partitions_ahead(p_ahead, p_as_of)   upkeep, idempotent, safe beside
--       itself: the partition pairs of the current width, the one before and p_ahead after.
--   routing.drop_partitions_older_than(p_age, p_apply, p_include_unjudged, p_as_of)
--       retention, a dry run unless p_apply: detaches and drops whole partition pairs,
--       refusing (55000) a pair that still holds in-flight work, unjudged successes or rows
--       an open repair run could restore; routing.purge_request_keys() then deletes the
--       dropped requests' keys in batches.
--   routing.ledger_partitions   the partition pairs and their ranges.
--
-- The layout. routing_outcomes is partitioned by RANGE (created_at), inferences by RANGE
-- (outcome_created_at), the owning outcome's created_at: an outcome and every attempt of
-- it live in the same range, in one pair of partitions with the same suffix
-- (routing_outcomes_p202612 / inferences_p202612, or _pYYYYMMDD with a daily width).
-- Keys: unique keys must include the partition key, so the primary keys are
-- (id, created_at) and (id, outcome_created_at); (agent_id, request_id) is unique in
-- routing.outcome_request_keys, which every outcome must name (foreign key on
-- (created_at, id, agent_id, request_id)), and which makes outcome ids unique across
-- partitions. The links are foreign keys between the two partitions of a pair:
--   routing_outcomes_pX (inference_id, created_at) -> inferences_pX (id, outcome_created_at)
--       DEFERRABLE INITIALLY DEFERRED (the atomic write: outcome first, then its attempt)
--   inferences_pX (outcome_id, outcome_created_at) -> routing_outcomes_pX (id, created_at)
-- They are per pair, not on the parents: two parent-level foreign keys pointing at each
-- other would make every partition impossible to detach (each detach finds the other
-- table's rows still referencing it), and retention would be impossible. A pair is
-- detached and dropped together. CHECK constraints and the guard triggers are defined
-- on the parents and hold on every partition. A DEFAULT pair takes a row no partition
-- covers, so a write never fails for a forgotten schedule; integrity_report counts its
-- rows as the violation rows_in_default_partition.
--
-- Lock discipline of the switch: one LOCK of both tables with lock_timeout 500ms, below
-- deadlock_timeout, so that a deadlock with a writer (which locks outcomes and attempts
-- in its own order) always costs the switch, never a request; the caller retries.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.settings
    ADD COLUMN IF NOT EXISTS partition_width text NOT NULL DEFAULT 'month'
        CONSTRAINT settings_partition_width_check CHECK (partition_width IN ('month', 'day'));
COMMENT ON COLUMN routing.settings.partition_width IS
    'Width of a ledger partition (month or day, in UTC), used by routing.create_partitions_ahead; changing it applies to partitions created afterwards.';

-- The unpartitioned layout's definitions, recorded by partition_ledger, replayed by
-- unpartition_ledger: the back-out puts back exactly what was there.
CREATE TABLE IF NOT EXISTS routing.ledger_layout_ddl (
    ordinal    int  NOT NULL PRIMARY KEY,
    table_name text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('index', 'constraint', 'trigger', 'comment', 'reloptions')),
    name       text NOT NULL,
    definition text NOT NULL,
    validated  boolean
);
COMMENT ON TABLE routing.ledger_layout_ddl IS
    'Indexes, constraints, triggers, grants and comments of the unpartitioned ledger tables, recorded when routing.partition_ledger switched them, so routing.unpartition_ledger restores them exactly.';
REVOKE ALL ON routing.ledger_layout_ddl FROM PUBLIC;

-- One row per partition of the two ledger tables: suffix, bounds (NULL: MINVALUE or
-- MAXVALUE), default or not. Read from the catalog.
CREATE OR REPLACE VIEW routing.ledger_partitions AS
SELECT p.relname::text AS partition_name,
       parent.relname::text AS table_name,
       substr(p.relname::text, length(parent.relname::text) + 2) AS suffix,
       b.is_default,
       CASE WHEN b.lo IS NOT NULL AND b.lo <> 'MINVALUE' THEN trim(both '''' from b.lo)::timestamptz END AS range_from,
       CASE WHEN b.hi IS NOT NULL AND b.hi <> 'MAXVALUE' THEN trim(both '''' from b.hi)::timestamptz END AS range_to
  FROM pg_catalog.pg_inherits h
  JOIN pg_catalog.pg_class parent ON parent.oid = h.inhparent
  JOIN pg_catalog.pg_namespace n ON n.oid = parent.relnamespace AND n.nspname = 'routing'
  JOIN pg_catalog.pg_class p ON p.oid = h.inhrelid
  CROSS JOIN LATERAL (
      SELECT pg_catalog.pg_get_expr(p.relpartbound, p.oid) = 'DEFAULT' AS is_default,
             (regexp_match(pg_catalog.pg_get_expr(p.relpartbound, p.oid), 'FROM \((.*)\) TO'))[1] AS lo,
             (regexp_match(pg_catalog.pg_get_expr(p.relpartbound, p.oid), 'TO \((.*)\)$'))[1] AS hi
  ) b
 WHERE parent.relname IN ('routing_outcomes', 'inferences');
COMMENT ON VIEW routing.ledger_partitions IS
    'The partitions of routing_outcomes and inferences with their ranges (NULL bound: unbounded); partitions of one pair share the suffix. Empty while the ledger is not partitioned.';
REVOKE ALL ON routing.ledger_partitions FROM PUBLIC;
GRANT SELECT ON routing.ledger_partitions TO routing_readonly, routing_ops;

CREATE OR REPLACE FUNCTION routing._ledger_is_partitioned()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT c.relkind = 'p' FROM pg_catalog.pg_class c WHERE c.oid = 'routing.routing_outcomes'::regclass
$$;

-- The range of the partition of the given width that holds p_at, in UTC.
CREATE OR REPLACE FUNCTION routing._partition_range(p_width text, p_at timestamptz,
                                                    OUT range_from timestamptz, OUT range_to timestamptz,
                                                    OUT suffix text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT date_trunc(p_width, p_at, 'UTC'),
           (date_trunc(p_width, p_at, 'UTC') AT TIME ZONE 'UTC' + ('1 ' || p_width)::interval) AT TIME ZONE 'UTC',
           'p' || to_char(date_trunc(p_width, p_at, 'UTC') AT TIME ZONE 'UTC',
                          CASE p_width WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END)
$$;

-- One pair of partitions. p_from NULL: MINVALUE (the history of a switched ledger);
-- p_to NULL too: the DEFAULT pair. The parents are parameters because partition_ledger
-- builds the pairs before the new parents have their final names (and their keys, so the
-- pair's foreign keys come after, from _link_partition_pair).
CREATE OR REPLACE FUNCTION routing._create_partition_pair(
    p_suffix text, p_from timestamptz, p_to timestamptz,
    p_outcomes text DEFAULT 'routing_outcomes', p_inferences text DEFAULT 'inferences'
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_bound text;
BEGIN
    v_bound := CASE WHEN p_from IS NULL AND p_to IS NULL THEN 'DEFAULT'
                    ELSE format('FOR VALUES FROM (%s) TO (%s)',
                                coalesce(quote_literal(p_from), 'MINVALUE'),
                                coalesce(quote_literal(p_to), 'MAXVALUE')) END;
    EXECUTE format('CREATE TABLE routing.%I PARTITION OF routing.%I %s', 'routing_outcomes_' || p_suffix, p_outcomes, v_bound);
    -- Attempts are updated in place (heartbeats, completion): room for HOT updates, as on
    -- the unpartitioned table (a partitioned parent takes no storage parameters).
    EXECUTE format('CREATE TABLE routing.%I PARTITION OF routing.%I %s WITH (fillfactor = 90)',
                   'inferences_' || p_suffix, p_inferences, v_bound);
END
$$;

-- The links of one pair: an outcome and its attempts share the pair. NOT VALID (the
-- online migration's switch-over, catalog-only; routing.migrate_ledger_finish validates
-- them) checks new rows at once and the copied history later.
CREATE OR REPLACE FUNCTION routing._link_partition_pair(p_suffix text, p_not_valid boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_o  text := 'routing_outcomes_' || p_suffix;
    v_i  text := 'inferences_' || p_suffix;
    v_nv text := CASE WHEN p_not_valid THEN ' NOT VALID' ELSE '' END;
BEGIN
    EXECUTE format('ALTER TABLE routing.%I ADD CONSTRAINT %I FOREIGN KEY (inference_id, created_at) '
                   'REFERENCES routing.%I (id, outcome_created_at) DEFERRABLE INITIALLY DEFERRED%s',
                   v_o, v_o || '_inference_fkey', v_i, v_nv);
    EXECUTE format('ALTER TABLE routing.%I ADD CONSTRAINT %I FOREIGN KEY (outcome_id, outcome_created_at) '
                   'REFERENCES routing.%I (id, created_at)%s',
                   v_i, v_i || '_outcome_fkey', v_o, v_nv);
END
$$;

-- The unpartitioned layout's indexes, constraints (with their validated state), triggers,
-- storage parameters and constraint comments, in replay order, into ledger_layout_ddl:
-- what unpartition_ledger (and the online migration) rebuild from. Names qualified.
CREATE OR REPLACE FUNCTION routing._record_ledger_layout()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    DELETE FROM routing.ledger_layout_ddl;
    INSERT INTO routing.ledger_layout_ddl (ordinal, table_name, kind, name, definition, validated)
    SELECT row_number() OVER (ORDER BY s.k, s.t, s.name), s.t, s.kind, s.name, s.def, s.validated
      FROM (
        SELECT c.conrelid::regclass::text AS t,
               CASE c.contype WHEN 'c' THEN 2 WHEN 'f' THEN 3 ELSE 1 END AS k,
               'constraint' AS kind, c.conname::text AS name,
               pg_get_constraintdef(c.oid) AS def, c.convalidated AS validated
          FROM pg_constraint c
         WHERE c.conrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
           AND c.contype IN ('p', 'u', 'c', 'f', 'x')
        UNION ALL
        SELECT x.indrelid::regclass::text, 0, 'index', ic.relname::text, pg_get_indexdef(x.indexrelid), NULL
          FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
         WHERE x.indrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
           AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.contype IN ('p', 'u', 'x'))
        UNION ALL
        SELECT t.tgrelid::regclass::text, 4, 'trigger', t.tgname::text, pg_get_triggerdef(t.oid), NULL
          FROM pg_trigger t
         WHERE t.tgrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
           AND NOT t.tgisinternal
        UNION ALL
        SELECT r.oid::regclass::text, 6, 'reloptions', r.relname::text, array_to_string(r.reloptions, ', '), NULL
          FROM pg_class r
         WHERE r.oid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
           AND r.reloptions IS NOT NULL
        UNION ALL
        SELECT c.conrelid::regclass::text, 5, 'comment', c.conname::text, obj_description(c.oid, 'pg_constraint'), NULL
          FROM pg_constraint c
         WHERE c.conrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
           AND obj_description(c.oid, 'pg_constraint') IS NOT NULL
      ) s;
END
$$;

-- Switches between the layouts, both ways, in the caller's transaction: the new tables
-- are built beside the old ones (LIKE: columns, defaults, identity, storage, comments),
-- the rows copied, the old tables dropped and the new renamed, then indexes,
-- constraints, triggers, views, grants and comments re-created. To partitioned: unique
-- keys gain the partition key, (request_id, agent_id) moves to outcome_request_keys (a
-- plain index stays for the lookup), the links become per-pair foreign keys, and the
-- unpartitioned definitions are recorded. Back: the recorded definitions are replayed.
CREATE OR REPLACE FUNCTION routing._switch_ledger_layout(p_to_partitioned boolean, p_max_rows bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_rows    bigint;
    v_views   jsonb;
    v_funcs   jsonb;
    v_v       record;
    v_d       record;
    v_seq     record;
    v_key     text;
    v_cols    text;
    v_def     text;
    v_width   text;
    v_now     timestamptz := now();
    v_current record;
    v_prev    record;
    v_r       record;
    v_oldest  timestamptz;
    v_k       int;
BEGIN
    IF routing._ledger_is_partitioned() = p_to_partitioned THEN
        RAISE EXCEPTION 'the ledger is already %', CASE WHEN p_to_partitioned THEN 'partitioned' ELSE 'unpartitioned' END
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_constraint c
                WHERE c.contype = 'f'
                  AND c.confrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
                  AND c.conrelid NOT IN (SELECT 'routing.routing_outcomes'::regclass UNION ALL
                                         SELECT 'routing.inferences'::regclass UNION ALL
                                         SELECT inhrelid FROM pg_catalog.pg_inherits
                                          WHERE inhparent IN ('routing.routing_outcomes'::regclass,
                                                              'routing.inferences'::regclass))) THEN
        RAISE EXCEPTION 'a table outside the ledger has a foreign key to routing_outcomes or inferences'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'drop it first and re-create it on the new keys afterwards';
    END IF;

    -- Below deadlock_timeout: a deadlock with live traffic costs this call, not a request.
    PERFORM set_config('lock_timeout', '500ms', true);
    LOCK TABLE routing.routing_outcomes, routing.inferences IN ACCESS EXCLUSIVE MODE;
    PERFORM set_config('lock_timeout', '5s', true);

    SELECT (SELECT count(*) FROM (SELECT FROM routing.routing_outcomes LIMIT p_max_rows + 1) o)
         + (SELECT count(*) FROM (SELECT FROM routing.inferences LIMIT p_max_rows + 1) i)
      INTO v_rows;
    IF v_rows > p_max_rows THEN
        RAISE EXCEPTION 'the ledger holds more than p_max_rows (%) rows; it is not switched in one transaction', p_max_rows
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'raise p_max_rows for an offline switch, or follow the online migration in docs/scaling.md';
    END IF;

    -- Names in captured definitions are schema-qualified.
    PERFORM set_config('search_path', 'pg_catalog', true);

    IF p_to_partitioned THEN
        PERFORM routing._record_ledger_layout();
    END IF;

    -- Views over the ledger, re-created on the new tables with the same text.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'name', v.oid::regclass::text, 'def', pg_get_viewdef(v.oid),
               'comment', obj_description(v.oid, 'pg_class'),
               'acl', coalesce((SELECT jsonb_agg(jsonb_build_array(a.grantee::regrole::text, a.privilege_type))
                                  FROM aclexplode(v.relacl) a WHERE a.grantee <> v.relowner AND a.grantee <> 0), '[]'))
             ORDER BY v.oid), '[]')
      INTO v_views
      FROM pg_class v
     WHERE v.relkind = 'v'
       AND v.oid IN (SELECT r.ev_class FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
                      WHERE d.refobjid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass));

    -- Functions that take or return a ledger row type go with the old tables' types.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'def', pg_get_functiondef(f.oid), 'sig', f.oid::regprocedure::text,
               'comment', obj_description(f.oid, 'pg_proc'),
               'acl', coalesce((SELECT jsonb_agg(jsonb_build_array(a.grantee::regrole::text, a.privilege_type))
                                  FROM aclexplode(f.proacl) a WHERE a.grantee <> f.proowner AND a.grantee <> 0), '[]'))
             ORDER BY f.oid), '[]')
      INTO v_funcs
      FROM pg_proc f
     WHERE f.oid IN (SELECT d.objid FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_type'::regclass
                        AND d.refobjid IN (SELECT c.reltype FROM pg_class c
                                            WHERE c.oid IN ('routing.routing_outcomes'::regclass,
                                                            'routing.inferences'::regclass)));

    -- The new tables, beside the old ones.
    EXECUTE format('CREATE TABLE routing.routing_outcomes_switch (LIKE routing.routing_outcomes '
                   'INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS) %s',
                   CASE WHEN p_to_partitioned THEN 'PARTITION BY RANGE (created_at)' ELSE '' END);
    EXECUTE format('CREATE TABLE routing.inferences_switch (LIKE routing.inferences '
                   'INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS) %s',
                   CASE WHEN p_to_partitioned THEN 'PARTITION BY RANGE (outcome_created_at)' ELSE '' END);

    IF p_to_partitioned THEN
        ALTER TABLE routing.inferences_switch ALTER COLUMN outcome_created_at SET NOT NULL;
        SELECT s.partition_width INTO v_width FROM routing.settings s;
        SELECT * INTO v_current FROM routing._partition_range(v_width, v_now);
        SELECT * INTO v_prev FROM routing._partition_range(v_width, v_current.range_from - interval '1 microsecond');
        -- History before the previous width: one pair, dropped whole by retention once
        -- its newest row is old enough.
        SELECT least((SELECT min(o.created_at) FROM routing.routing_outcomes o),
                     (SELECT min(i.created_at) FROM routing.inferences i WHERE i.outcome_id IS NULL))
          INTO v_oldest;
        IF v_oldest < v_prev.range_from THEN
            PERFORM routing._create_partition_pair('history', NULL, v_prev.range_from,
                                                   'routing_outcomes_switch', 'inferences_switch');
        END IF;
        FOR v_k IN -1..2 LOOP
            SELECT * INTO v_r FROM routing._partition_range(v_width,
                (v_current.range_from AT TIME ZONE 'UTC' + v_k * ('1 ' || v_width)::interval) AT TIME ZONE 'UTC');
            PERFORM routing._create_partition_pair(v_r.suffix, v_r.range_from, v_r.range_to,
                                                   'routing_outcomes_switch', 'inferences_switch');
        END LOOP;
        PERFORM routing._create_partition_pair('default', NULL, NULL,
                                               'routing_outcomes_switch', 'inferences_switch');

        INSERT INTO routing.routing_outcomes_switch SELECT * FROM routing.routing_outcomes;
        -- An attempt's partition key is its owner's created_at; history that no outcome
        -- owns takes that of the outcome linking to it (the old path's one-way link), else
        -- its own.
        SELECT string_agg(CASE WHEN a.attname = 'outcome_created_at'
                               THEN 'coalesce(ow.created_at, ln.created_at, i.created_at)'
                               ELSE 'i.' || quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
          INTO v_cols
          FROM pg_attribute a
         WHERE a.attrelid = 'routing.inferences'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE 'INSERT INTO routing.inferences_switch SELECT ' || v_cols ||
                ' FROM routing.inferences i'
                ' LEFT JOIN routing.routing_outcomes ow ON ow.id = i.outcome_id'
                ' LEFT JOIN LATERAL (SELECT min(l.created_at) AS created_at FROM routing.routing_outcomes l'
                '                     WHERE l.inference_id = i.id AND i.outcome_id IS NULL) ln ON true';
        INSERT INTO routing.outcome_request_keys (agent_id, request_id, outcome_id, outcome_created_at)
        SELECT o.agent_id, o.request_id, o.id, o.created_at FROM routing.routing_outcomes o
        ON CONFLICT (agent_id, request_id) DO NOTHING;
    ELSE
        ALTER TABLE routing.inferences_switch ALTER COLUMN outcome_created_at DROP NOT NULL;
        INSERT INTO routing.routing_outcomes_switch SELECT * FROM routing.routing_outcomes;
        INSERT INTO routing.inferences_switch SELECT * FROM routing.inferences;
    END IF;

    -- The sequences' positions survive the swap.
    CREATE TEMP TABLE IF NOT EXISTS ledger_switch_seq (t text, last_value bigint, is_called boolean) ON COMMIT DROP;
    DELETE FROM ledger_switch_seq;
    INSERT INTO ledger_switch_seq SELECT 'routing_outcomes', last_value, is_called FROM routing.routing_outcomes_id_seq;
    INSERT INTO ledger_switch_seq SELECT 'inferences', last_value, is_called FROM routing.inferences_id_seq;

    PERFORM set_config('client_min_messages', 'warning', true);  -- the views' cascade, re-created below
    DROP TABLE routing.routing_outcomes, routing.inferences CASCADE;
    ALTER TABLE routing.routing_outcomes_switch RENAME TO routing_outcomes;
    ALTER TABLE routing.inferences_switch RENAME TO inferences;
    ALTER SEQUENCE routing.routing_outcomes_switch_id_seq RENAME TO routing_outcomes_id_seq;
    ALTER SEQUENCE routing.inferences_switch_id_seq RENAME TO inferences_id_seq;
    FOR v_seq IN SELECT * FROM ledger_switch_seq LOOP
        PERFORM setval(format('routing.%I_id_seq', v_seq.t), v_seq.last_value, v_seq.is_called);
    END LOOP;

    -- Indexes, constraints, triggers of the unpartitioned layout, in recorded order;
    -- to partitioned, unique keys gain the partition key and the links become per pair.
    FOR v_d IN SELECT * FROM routing.ledger_layout_ddl d WHERE d.kind IN ('index', 'constraint', 'trigger') ORDER BY d.ordinal LOOP
        v_key := CASE WHEN v_d.table_name = 'routing.routing_outcomes' THEN 'created_at' ELSE 'outcome_created_at' END;
        v_def := v_d.definition;
        IF p_to_partitioned THEN
            IF v_d.kind = 'constraint' AND v_def LIKE 'FOREIGN KEY%'
               AND v_def ~ 'REFERENCES routing\.(routing_outcomes|inferences)\(' THEN
                CONTINUE;  -- replaced by the per-pair foreign keys
            ELSIF v_d.kind = 'constraint' AND v_def ~ '^UNIQUE \((request_id, agent_id|agent_id, request_id)\)' THEN
                -- Now unique in outcome_request_keys; the lookup keeps its index.
                EXECUTE format('CREATE INDEX %I ON %s (request_id, agent_id)', v_d.name, v_d.table_name);
                CONTINUE;
            ELSIF v_d.kind = 'constraint' AND v_def ~ '^(PRIMARY KEY|UNIQUE) \(' THEN
                v_def := regexp_replace(v_def, '^(PRIMARY KEY|UNIQUE) \(([^)]*)\)', '\1 (\2, ' || v_key || ')');
            ELSIF v_d.kind = 'index' AND v_def LIKE 'CREATE UNIQUE INDEX%' THEN
                v_def := regexp_replace(v_def, 'USING (\w+) \(([^)]*)\)', 'USING \1 (\2, ' || v_key || ')');
            END IF;
        END IF;
        IF v_d.kind = 'constraint' THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s%s', v_d.table_name, v_d.name, v_def,
                           CASE WHEN v_d.validated THEN '' ELSE ' NOT VALID' END);
        ELSE
            EXECUTE v_def;
        END IF;
    END LOOP;
    FOR v_d IN SELECT * FROM routing.ledger_layout_ddl d WHERE d.kind = 'comment' ORDER BY d.ordinal LOOP
        EXECUTE format('COMMENT ON CONSTRAINT %I ON %s IS %L', v_d.name, v_d.table_name, v_d.definition);
    END LOOP;
    IF NOT p_to_partitioned THEN
        FOR v_d IN SELECT * FROM routing.ledger_layout_ddl d WHERE d.kind = 'reloptions' ORDER BY d.ordinal LOOP
            EXECUTE format('ALTER TABLE %s SET (%s)', v_d.table_name, v_d.definition);
        END LOOP;
    END IF;
    IF p_to_partitioned THEN
        FOR v_d IN SELECT DISTINCT p.suffix FROM routing.ledger_partitions p LOOP
            PERFORM routing._link_partition_pair(v_d.suffix);
        END LOOP;
        ALTER TABLE routing.routing_outcomes
            ADD CONSTRAINT routing_outcomes_request_key_fkey
            FOREIGN KEY (created_at, id, agent_id, request_id)
            REFERENCES routing.outcome_request_keys (outcome_created_at, outcome_id, agent_id, request_id);
        -- Idempotency across partitions, and attempts that follow a re-link (change
        -- outcome_request_keys): only this layout has them.
        CREATE TRIGGER claim_request_key
            BEFORE INSERT ON routing.routing_outcomes
            FOR EACH ROW EXECUTE FUNCTION routing._claim_request_key();
        CREATE TRIGGER follow_outcome_created_at
            BEFORE UPDATE OF outcome_id ON routing.inferences
            FOR EACH ROW EXECUTE FUNCTION routing._follow_outcome_created_at();
    ELSE
        DELETE FROM routing.ledger_layout_ddl;
        -- The unpartitioned layout's unique key holds idempotency again.
        TRUNCATE routing.outcome_request_keys;
    END IF;

    COMMENT ON TABLE routing.routing_outcomes IS
        'One row per routed request: the decision (rule, model, explanation) and its single terminal outcome. Written only by the routing.* functions.';
    COMMENT ON TABLE routing.inferences IS
        'One row per dispatch attempt to a provider model: routed -> succeeded | failed, never back. Written only by the routing.* functions.';
    REVOKE ALL ON routing.routing_outcomes, routing.inferences FROM PUBLIC;
    GRANT SELECT ON routing.routing_outcomes, routing.inferences TO routing_readonly;

    FOR v_v IN SELECT e.x ->> 'def' AS def, e.x ->> 'sig' AS sig, e.x ->> 'comment' AS comment, e.x -> 'acl' AS acl
                 FROM jsonb_array_elements(v_funcs) e(x) LOOP
        EXECUTE v_v.def;
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_v.sig);
        IF v_v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON FUNCTION %s IS %L', v_v.sig, v_v.comment);
        END IF;
        FOR v_d IN SELECT a ->> 0 AS grantee FROM jsonb_array_elements(coalesce(v_v.acl, '[]')) a LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_v.sig, v_d.grantee);
        END LOOP;
    END LOOP;

    FOR v_v IN SELECT * FROM jsonb_array_elements(v_views) e(x), LATERAL (SELECT e.x ->> 'name' AS name, e.x ->> 'def' AS def,
                                                                          e.x ->> 'comment' AS comment, e.x -> 'acl' AS acl) s LOOP
        EXECUTE format('CREATE VIEW %s AS %s', v_v.name, v_v.def);
        IF v_v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %s IS %L', v_v.name, v_v.comment);
        END IF;
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', v_v.name);
        FOR v_d IN SELECT a ->> 0 AS grantee, a ->> 1 AS priv FROM jsonb_array_elements(coalesce(v_v.acl, '[]')) a LOOP
            EXECUTE format('GRANT %s ON %s TO %I', v_d.priv, v_v.name, v_d.grantee);
        END LOOP;
    END LOOP;

    RETURN v_rows;
END
$$;

CREATE OR REPLACE FUNCTION routing.partition_ledger(p_max_rows bigint DEFAULT 1000000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_int('partition_ledger', 'p_max_rows', p_max_rows, 0, 9223372036854775806);
    RETURN routing._switch_ledger_layout(true, p_max_rows);
END
$$;
COMMENT ON FUNCTION routing.partition_ledger(bigint) IS
    'Switches an unpartitioned ledger to the time-partitioned layout in the caller''s transaction (rows copied, every guarantee kept; the previous width, the current one and two ahead, a history pair for older rows, a DEFAULT pair). Returns the rows moved. Locks both tables with lock_timeout 500ms (55P03: retry). 55000 when already partitioned, when more than p_max_rows rows (the online migration in docs/scaling.md is for those) or when an outside table references the ledger; 22023 on a bad p_max_rows. Owner only.';

CREATE OR REPLACE FUNCTION routing.unpartition_ledger(p_max_rows bigint DEFAULT 1000000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM routing._require_int('unpartition_ledger', 'p_max_rows', p_max_rows, 0, 9223372036854775806);
    IF NOT EXISTS (SELECT FROM routing.ledger_layout_ddl) THEN
        RAISE EXCEPTION 'unpartition_ledger: no recorded unpartitioned layout'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'the ledger was not switched by routing.partition_ledger';
    END IF;
    RETURN routing._switch_ledger_layout(false, p_max_rows);
END
$$;
COMMENT ON FUNCTION routing.unpartition_ledger(bigint) IS
    'The back-out of routing.partition_ledger: the unpartitioned tables with exactly their recorded indexes, constraints (validated state included), triggers and comments, rows copied back. Same locking and refusals (55000) as partition_ledger. Owner only.';

CREATE OR REPLACE FUNCTION routing.create_partitions_ahead(
    p_ahead int DEFAULT 2,
    p_as_of timestamptz DEFAULT now()
) RETURNS TABLE (partition_name text, range_from timestamptz, range_to timestamptz, action text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_width   text;
    v_current record;
    v_r       record;
    v_k       int;
    v_step    interval;
BEGIN
    PERFORM routing._require_int('create_partitions_ahead', 'p_ahead', p_ahead, 2, 1000);
    PERFORM routing._require_timestamp('create_partitions_ahead', 'p_as_of', p_as_of);
    IF NOT routing._ledger_is_partitioned() THEN
        RAISE EXCEPTION 'create_partitions_ahead: the ledger is not partitioned'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'see routing.partition_ledger';
    END IF;
    -- Two runs at once: the second waits, then finds the partitions there.
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('routing.ledger_partitions'));
    SELECT s.partition_width INTO v_width FROM routing.settings s;
    v_step := ('1 ' || v_width)::interval;
    SELECT * INTO v_current FROM routing._partition_range(v_width, p_as_of);
    FOR v_k IN -1..p_ahead LOOP
        SELECT * INTO v_r FROM routing._partition_range(v_width,
            (v_current.range_from AT TIME ZONE 'UTC' + v_k * v_step) AT TIME ZONE 'UTC');
        partition_name := 'routing_outcomes_' || v_r.suffix;
        range_from := v_r.range_from;
        range_to := v_r.range_to;
        IF EXISTS (SELECT FROM routing.ledger_partitions p
                    WHERE p.table_name = 'routing_outcomes' AND NOT p.is_default
                      AND coalesce(p.range_from, '-infinity') < v_r.range_to
                      AND coalesce(p.range_to, 'infinity') > v_r.range_from) THEN
            action := 'exists';
        ELSIF EXISTS (SELECT FROM routing.routing_outcomes_default o
                       WHERE o.created_at >= v_r.range_from AND o.created_at < v_r.range_to)
           OR EXISTS (SELECT FROM routing.inferences_default i
                       WHERE i.outcome_created_at >= v_r.range_from AND i.outcome_created_at < v_r.range_to) THEN
            -- The rows a missing partition let into DEFAULT (rows_in_default_partition):
            -- creating the range now would fail; docs/scaling.md says how to move them.
            action := 'blocked_by_default_rows';
        ELSE
            PERFORM routing._create_partition_pair(v_r.suffix, v_r.range_from, v_r.range_to);
            PERFORM routing._link_partition_pair(v_r.suffix);
            action := 'created';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION routing.create_partitions_ahead(int, timestamptz) IS
    'Partition upkeep: makes sure the partition pairs (routing_outcomes_pX, inferences_pX) exist for the width before p_as_of''s, p_as_of''s and p_ahead (>= 2) after, in settings.partition_width (UTC). One row per range: created, exists, or blocked_by_default_rows (rows already in the DEFAULT pair; see docs/scaling.md). Idempotent and safe beside itself (advisory lock). 55000 when the ledger is not partitioned; 22023 on a bad argument.';

CREATE OR REPLACE FUNCTION routing.drop_partitions_older_than(
    p_age              interval,
    p_apply            boolean DEFAULT false,
    p_include_unjudged boolean DEFAULT false,
    p_as_of            timestamptz DEFAULT now()
) RETURNS TABLE (partition_name text, range_from timestamptz, range_to timestamptz,
                 outcomes bigint, inferences bigint, action text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_p       record;
    v_refusal text;
    v_in_flight bigint;
    v_unjudged  bigint;
    v_repairs   bigint;
BEGIN
    PERFORM routing._require_interval('drop_partitions_older_than', 'p_age', p_age, interval '1 day');
    PERFORM routing._require_not_null('drop_partitions_older_than', 'p_apply', p_apply);
    PERFORM routing._require_not_null('drop_partitions_older_than', 'p_include_unjudged', p_include_unjudged);
    PERFORM routing._require_timestamp('drop_partitions_older_than', 'p_as_of', p_as_of);
    IF NOT routing._ledger_is_partitioned() THEN
        RAISE EXCEPTION 'drop_partitions_older_than: the ledger is not partitioned'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'see routing.partition_ledger';
    END IF;
    PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('routing.ledger_partitions'));
    -- A dropped partition takes its rows with it: keep the detach's ACCESS EXCLUSIVE
    -- wait short, so it never stalls traffic for long (55P03: run it again).
    IF p_apply THEN
        PERFORM set_config('lock_timeout', '2s', true);
    END IF;

    FOR v_p IN
        SELECT p.suffix, p.range_from, p.range_to
          FROM routing.ledger_partitions p
         WHERE p.table_name = 'routing_outcomes' AND NOT p.is_default
           AND p.range_to IS NOT NULL AND p.range_to <= p_as_of - p_age
         ORDER BY p.range_to
    LOOP
        partition_name := 'routing_outcomes_' || v_p.suffix;
        range_from := v_p.range_from;
        range_to := v_p.range_to;
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE outcome_status IS NULL),
                               count(*) FILTER (WHERE outcome_status = ''succeeded''
                                                  AND judge_status IN (''unlabeled'', ''claimed''))
                          FROM routing.%I', partition_name)
           INTO outcomes, v_in_flight, v_unjudged;
        EXECUTE format('SELECT count(*), %s + count(*) FILTER (WHERE status = ''routed'') FROM routing.%I',
                       v_in_flight, 'inferences_' || v_p.suffix)
           INTO inferences, v_in_flight;
        -- Rows an applied, not rolled-back repair run changed: its rollback needs them.
        EXECUTE format('SELECT count(*) FROM routing.repair_backup b JOIN routing.repair_runs r USING (run_id)
                         WHERE r.rolled_back_at IS NULL
                           AND ((b.table_name = ''routing_outcomes''
                                 AND EXISTS (SELECT FROM routing.%I o WHERE o.id = b.row_id))
                             OR (b.table_name = ''inferences''
                                 AND EXISTS (SELECT FROM routing.%I i WHERE i.id = b.row_id)))',
                       partition_name, 'inferences_' || v_p.suffix)
           INTO v_repairs;
        v_refusal := CASE
            WHEN v_in_flight > 0 THEN format('%s in-flight outcomes or routed attempts', v_in_flight)
            WHEN v_unjudged > 0 AND NOT p_include_unjudged THEN format('%s succeeded outcomes not yet judged', v_unjudged)
            WHEN v_repairs > 0 THEN format('%s rows of an open repair run', v_repairs)
        END;
        IF v_refusal IS NOT NULL THEN
            IF p_apply THEN
                RAISE EXCEPTION 'drop_partitions_older_than: partition % (% .. %) still holds %',
                                partition_name, v_p.range_from, v_p.range_to, v_refusal
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'reap, judge (or p_include_unjudged => true) or roll back / keep the repair run, then run it again; nothing was dropped';
            END IF;
            action := 'refused: ' || v_refusal;
        ELSIF p_apply THEN
            EXECUTE format('ALTER TABLE routing.routing_outcomes DETACH PARTITION routing.%I', partition_name);
            EXECUTE format('ALTER TABLE routing.inferences DETACH PARTITION routing.%I', 'inferences_' || v_p.suffix);
            EXECUTE format('DROP TABLE routing.%I, routing.%I', partition_name, 'inferences_' || v_p.suffix);
            action := 'dropped';
        ELSE
            action := 'would_drop';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz) IS
    'Retention by partition: every pair whose range ended at least p_age (>= 1 day) before p_as_of. Dry run by default (would_drop, or refused: reason); with p_apply detaches (lock_timeout 2s) and drops each pair. Refuses (55000, naming the partition; nothing dropped) a pair holding in-flight outcomes or routed attempts, succeeded outcomes not yet judged (unless p_include_unjudged), or rows an open repair run changed. The dropped requests'' keys go with routing.purge_request_keys. Archive first with pg_dump -t (docs/scaling.md). 55000 when not partitioned; 22023 on a bad argument.';

CREATE OR REPLACE FUNCTION routing.purge_request_keys(p_batch int DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_before  timestamptz;
    v_deleted bigint;
BEGIN
    PERFORM routing._require_int('purge_request_keys', 'p_batch', p_batch, 1, 1000000);
    IF NOT routing._ledger_is_partitioned() THEN
        RETURN 0;
    END IF;
    -- Keys older than every retained range belong to dropped partitions (a DEFAULT row
    -- keeps its key through the foreign key).
    SELECT min(coalesce(p.range_from, '-infinity')) INTO v_before
      FROM routing.ledger_partitions p WHERE p.table_name = 'routing_outcomes' AND NOT p.is_default;
    WITH doomed AS (
        SELECT k.agent_id, k.request_id FROM routing.outcome_request_keys k
         WHERE k.outcome_created_at < v_before
           AND NOT EXISTS (SELECT FROM routing.routing_outcomes_default o
                            WHERE o.id = k.outcome_id AND o.created_at = k.outcome_created_at)
         ORDER BY k.outcome_created_at
         LIMIT p_batch
    )
    DELETE FROM routing.outcome_request_keys k USING doomed d
     WHERE k.agent_id = d.agent_id AND k.request_id = d.request_id;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END
$$;
COMMENT ON FUNCTION routing.purge_request_keys(int) IS
    'Deletes up to p_batch idempotency keys of requests whose partition retention dropped (older than every retained range); returns how many (0: done). Run after drop_partitions_older_than, in a loop, each call its own transaction. Until then a retry of such a request raises 55000 instead of being decided again. 22023 on a bad p_batch.';

REVOKE ALL ON FUNCTION routing._record_ledger_layout(),
    routing._ledger_is_partitioned(), routing._partition_range(text, timestamptz),
    routing._create_partition_pair(text, timestamptz, timestamptz, text, text),
    routing._link_partition_pair(text, boolean),
    routing._switch_ledger_layout(boolean, bigint),
    routing.partition_ledger(bigint), routing.unpartition_ledger(bigint),
    routing.create_partitions_ahead(int, timestamptz),
    routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz),
    routing.purge_request_keys(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.create_partitions_ahead(int, timestamptz),
    routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz),
    routing.purge_request_keys(int) TO routing_ops;

COMMIT;
