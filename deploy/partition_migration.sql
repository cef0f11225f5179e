-- Deploy routing_ledger:partition_migration to pg
-- requires: partitioned_ledger
--
-- The online migration of an unpartitioned ledger with history (v0.1 and later) to the
-- time-partitioned layout, under live traffic (docs/scaling.md, "The online migration").
-- routing.partition_ledger switches in one transaction and stalls writers for the copy
-- (about 13 s per million outcomes); this one copies in batches beside live traffic and
-- holds an exclusive lock only for a catalog-only switch-over. Owner only; each step is
-- its own transaction, and every step that locks a ledger table does so with a short
-- lock_timeout (55P03: run the step again).
--
--   migrate_ledger_start()        the partitioned twins routing_outcomes_part and
--       inferences_part (their partition pairs, indexes, validated CHECKs and catalog
--       foreign keys, built empty, so copying maintains them), the keys' foreign key,
--       and AFTER INSERT OR UPDATE OR DELETE triggers on the live tables that apply every
--       change to the twins in the writer's own transaction (an upsert, so a row the copy
--       has not reached yet is written whole). The live tables' layout is recorded in
--       ledger_layout_ddl (what the back-out and unpartition_ledger rebuild from).
--   migrate_ledger_copy(p_batch)  the next p_batch rows of history by id (outcomes, then
--       attempts), ON CONFLICT DO NOTHING (the trigger may have written a row already: it
--       is newer), with their request keys; FOR KEY SHARE, so a concurrent delete cannot
--       leave a copied ghost. Returns the rows copied; 0 when done. Call it in a loop, one
--       transaction per call, at the pace the primary can take.
--   migrate_ledger_verify()       once copied: live and twin row counts (and the keys) in
--       one snapshot, which must be equal because every write is mirrored in its own
--       transaction. Required before the switch-over.
--   migrate_ledger_switch(p_lock_timeout)   ACCESS EXCLUSIVE on the four tables (waiting
--       at most p_lock_timeout, 100 ms by default, below deadlock_timeout, so a deadlock
--       with a writer costs this call, never a request): the live tables become *_v01,
--       the twins take their names (indexes and sequences too, the sequences' positions
--       carried over under the sequences' own lock), the recorded triggers and NOT VALID
--       checks, the pair foreign keys (NOT VALID: catalog-only), the request-key
--       trigger; views and every function over the ledger re-created, so every session
--       re-plans on the new tables. The *_v01 tables then receive every change back
--       (their own triggers disabled), so the switch can still be backed out.
--   migrate_ledger_finish()       drops the *_v01 tables and the mirror (bounded lock).
--   validate_partition_links()    then, in its own transaction, validates the pairs'
--       foreign keys against the history (SHARE UPDATE EXCLUSIVE: traffic continues).
--   migrate_ledger_back_out()     before the switch-over: drops the twins and triggers;
--       after it (before finish): the same switch-over in reverse, then the partitioned
--       tables are dropped. Either way the ledger is exactly as before.
--   routing.ledger_migration      one row while a migration runs: phase, copy cursors.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.ledger_migration (
    singleton            boolean NOT NULL DEFAULT true PRIMARY KEY CHECK (singleton),
    phase                text NOT NULL CHECK (phase IN ('copying', 'switched')),
    outcomes_until       bigint NOT NULL,
    inferences_until     bigint NOT NULL,
    outcomes_copied_to   bigint NOT NULL DEFAULT 0,
    inferences_copied_to bigint NOT NULL DEFAULT 0,
    rows_copied          bigint NOT NULL DEFAULT 0,
    started_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    verified_at          timestamptz,
    switched_at          timestamptz
);
COMMENT ON TABLE routing.ledger_migration IS
    'The online migration to the partitioned ledger while it runs (routing.migrate_ledger_*): phase copying or switched, the history''s highest ids at the start (*_until) and how far the copy has come (*_copied_to), rows copied, when verified and switched.';
REVOKE ALL ON routing.ledger_migration FROM PUBLIC;
GRANT SELECT ON routing.ledger_migration TO routing_ops, routing_readonly;

CREATE OR REPLACE FUNCTION routing._ledger_migration_state()
RETURNS routing.ledger_migration
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_m routing.ledger_migration;
BEGIN
    SELECT * INTO v_m FROM routing.ledger_migration FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no ledger migration is running'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'start one with routing.migrate_ledger_start()';
    END IF;
    RETURN v_m;
END
$$;

-- An attempt's partition key: its owner's created_at; history that no outcome owns takes
-- that of the outcome linking to it (the old path's one-way link), else its own.
CREATE OR REPLACE FUNCTION routing._attempt_partition_key(p_id bigint, p_outcome_id bigint, p_created_at timestamptz)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
    SELECT coalesce((SELECT o.created_at FROM routing.routing_outcomes o WHERE o.id = p_outcome_id),
                    (SELECT min(l.created_at) FROM routing.routing_outcomes l
                      WHERE l.inference_id = p_id AND p_outcome_id IS NULL),
                    p_created_at)
$$;

-- The mirror trigger functions, generated from the catalog's column lists: every change
-- of the live tables applied to the tables named with p_suffix ('_part': the twins;
-- '_v01': the old tables after the switch-over). Upserts by primary key; a change of a
-- row's key columns deletes the old version first. Only the twins carry request keys.
CREATE OR REPLACE FUNCTION routing._create_ledger_mirror(p_suffix text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_table   text;
    v_cols    text;
    v_new     text;
    v_exc     text;
    v_key     text;
    v_to_part boolean := p_suffix = '_part';
    v_keyval  text;
    v_body    text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['routing_outcomes', 'inferences'] LOOP
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
               string_agg(CASE WHEN v_table = 'inferences' AND a.attname = 'outcome_created_at'
                               THEN 'v_key' ELSE 'NEW.' || quote_ident(a.attname) END, ', ' ORDER BY a.attnum),
               string_agg('EXCLUDED.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
          INTO v_cols, v_new, v_exc
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = ('routing.' || v_table)::regclass AND a.attnum > 0 AND NOT a.attisdropped;
        v_key := CASE WHEN NOT v_to_part THEN 'id'
                      WHEN v_table = 'inferences' THEN 'id, outcome_created_at' ELSE 'id, created_at' END;
        v_keyval := CASE WHEN v_table = 'inferences' AND v_to_part
                         THEN 'CASE WHEN TG_OP = ''INSERT'' AND NEW.outcome_created_at IS NOT NULL THEN NEW.outcome_created_at
                                    ELSE routing._attempt_partition_key(NEW.id, NEW.outcome_id, NEW.created_at) END'
                         WHEN v_table = 'inferences' THEN 'NEW.outcome_created_at'
                         ELSE 'NULL' END;
        v_body := format($f$
DECLARE
    v_key timestamptz;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM routing.%2$I t WHERE t.id = OLD.id;
        %3$s
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.id <> NEW.id OR %1$s THEN
            DELETE FROM routing.%2$I t WHERE t.id = OLD.id;
            %3$s
        END IF;
    END IF;
    %4$s
    %5$s
    INSERT INTO routing.%2$I (%6$s) VALUES (%7$s)
    ON CONFLICT (%8$s) DO UPDATE SET (%6$s) = ROW(%9$s);
    RETURN NULL;
END
$f$,
            CASE WHEN NOT v_to_part THEN 'false'
                 WHEN v_table = 'inferences' THEN 'OLD.outcome_id IS DISTINCT FROM NEW.outcome_id'
                 ELSE '(OLD.created_at, OLD.agent_id, OLD.request_id) IS DISTINCT FROM (NEW.created_at, NEW.agent_id, NEW.request_id)' END,
            v_table || p_suffix,
            CASE WHEN v_to_part AND v_table = 'routing_outcomes'
                 THEN 'DELETE FROM routing.outcome_request_keys k WHERE k.outcome_id = OLD.id;' ELSE '' END,
            'v_key := ' || v_keyval || ';',
            CASE WHEN v_to_part AND v_table = 'routing_outcomes'
                 THEN 'INSERT INTO routing.outcome_request_keys (agent_id, request_id, outcome_id, outcome_created_at)
    VALUES (NEW.agent_id, NEW.request_id, NEW.id, NEW.created_at) ON CONFLICT (agent_id, request_id) DO NOTHING;'
                 ELSE '' END,
            v_cols, v_new, v_key, v_exc);
        EXECUTE format('CREATE OR REPLACE FUNCTION routing.%I() RETURNS trigger LANGUAGE plpgsql '
                       'SET search_path = pg_catalog, routing, pg_temp AS %L',
                       '_mirror_' || v_table, v_body);
        EXECUTE format('REVOKE ALL ON FUNCTION routing.%I() FROM PUBLIC', '_mirror_' || v_table);
    END LOOP;
END
$$;

-- Index names are unique in the schema: a table's own indexes (not its partitions')
-- change their suffix when the table changes hands (renaming an index renames the
-- constraint it backs).
CREATE OR REPLACE FUNCTION routing._rename_ledger_indexes(p_table regclass, p_from text, p_to text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN SELECT c.relname FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
                   WHERE x.indrelid = p_table ORDER BY c.relname LOOP
        EXECUTE format('ALTER INDEX routing.%I RENAME TO %I', v_name,
                       left(v_name, length(v_name) - length(p_from)) || p_to);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION routing.migrate_ledger_start()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_d       record;
    v_def     text;
    v_key     text;
    v_width   text;
    v_current record;
    v_prev    record;
    v_r       record;
    v_k       int;
BEGIN
    IF routing._ledger_is_partitioned() THEN
        RAISE EXCEPTION 'migrate_ledger_start: the ledger is already partitioned'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT FROM routing.ledger_migration) THEN
        RAISE EXCEPTION 'migrate_ledger_start: a migration is already running'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'see routing.ledger_migration; continue it, or routing.migrate_ledger_back_out()';
    END IF;
    -- The triggers below need SHARE ROW EXCLUSIVE on the live tables: both at once, a
    -- short wait, below deadlock_timeout (a writer locks the two tables in either order;
    -- a deadlock must cost this call, never a request).
    PERFORM set_config('lock_timeout', '100ms', true);
    LOCK TABLE routing.routing_outcomes, routing.inferences IN SHARE ROW EXCLUSIVE MODE;
    PERFORM routing._record_ledger_layout();
    PERFORM set_config('search_path', 'pg_catalog', true);

    CREATE TABLE routing.routing_outcomes_part (LIKE routing.routing_outcomes
        INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)
        PARTITION BY RANGE (created_at);
    CREATE TABLE routing.inferences_part (LIKE routing.inferences
        INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)
        PARTITION BY RANGE (outcome_created_at);
    ALTER TABLE routing.inferences_part ALTER COLUMN outcome_created_at SET NOT NULL;

    -- The history pair (older than the previous width; retention drops it whole), the
    -- previous, current and two next widths, and the DEFAULT pair.
    SELECT s.partition_width INTO v_width FROM routing.settings s;
    SELECT * INTO v_current FROM routing._partition_range(v_width, now());
    SELECT * INTO v_prev FROM routing._partition_range(v_width, v_current.range_from - interval '1 microsecond');
    PERFORM routing._create_partition_pair('history', NULL, v_prev.range_from,
                                           'routing_outcomes_part', 'inferences_part');
    FOR v_k IN -1..2 LOOP
        SELECT * INTO v_r FROM routing._partition_range(v_width,
            (v_current.range_from AT TIME ZONE 'UTC' + v_k * ('1 ' || v_width)::interval) AT TIME ZONE 'UTC');
        PERFORM routing._create_partition_pair(v_r.suffix, v_r.range_from, v_r.range_to,
                                               'routing_outcomes_part', 'inferences_part');
    END LOOP;
    PERFORM routing._create_partition_pair('default', NULL, NULL, 'routing_outcomes_part', 'inferences_part');

    -- Indexes and validated constraints, built on the empty twins (index names, and the
    -- names of index-backed constraints, take '_p' until the switch-over). Unique keys gain the partition key; (request_id,
    -- agent_id) is unique in outcome_request_keys and keeps a plain index; the links
    -- between the two tables become the pairs' foreign keys at the switch-over, like the
    -- NOT VALID checks (history may break them) and the triggers (budget settlement and
    -- the guards must not fire for a mirrored row).
    FOR v_d IN SELECT * FROM routing.ledger_layout_ddl d
                WHERE d.kind IN ('index', 'constraint') ORDER BY d.ordinal LOOP
        v_key := CASE WHEN v_d.table_name = 'routing.routing_outcomes' THEN 'created_at' ELSE 'outcome_created_at' END;
        v_def := v_d.definition;
        IF v_d.kind = 'constraint' THEN
            CONTINUE WHEN NOT v_d.validated;
            CONTINUE WHEN v_def ~ '^FOREIGN KEY .* REFERENCES routing\.(routing_outcomes|inferences)\(';
            IF v_def ~ '^UNIQUE \((request_id, agent_id|agent_id, request_id)\)' THEN
                EXECUTE format('CREATE INDEX %I ON %s_part (request_id, agent_id)', v_d.name || '_p', v_d.table_name);
                CONTINUE;
            ELSIF v_def ~ '^(PRIMARY KEY|UNIQUE) \(' THEN
                v_def := regexp_replace(v_def, '^(PRIMARY KEY|UNIQUE) \(([^)]*)\)', '\1 (\2, ' || v_key || ')');
            END IF;
            EXECUTE format('ALTER TABLE %s_part ADD CONSTRAINT %I %s', v_d.table_name,
                           v_d.name || CASE WHEN v_def ~ '^(PRIMARY KEY|UNIQUE) ' THEN '_p' ELSE '' END, v_def);
        ELSE
            IF v_def LIKE 'CREATE UNIQUE INDEX%' THEN
                v_def := regexp_replace(v_def, 'USING (\w+) \(([^)]*)\)', 'USING \1 (\2, ' || v_key || ')');
            END IF;
            v_def := regexp_replace(v_def, '^CREATE (UNIQUE )?INDEX (\S+) ON (\S+) ',
                                    'CREATE \1INDEX \2_p ON \3_part ');
            EXECUTE v_def;
        END IF;
    END LOOP;
    ALTER TABLE routing.routing_outcomes_part
        ADD CONSTRAINT routing_outcomes_request_key_fkey
        FOREIGN KEY (created_at, id, agent_id, request_id)
        REFERENCES routing.outcome_request_keys (outcome_created_at, outcome_id, agent_id, request_id);
    REVOKE ALL ON routing.routing_outcomes_part, routing.inferences_part FROM PUBLIC;

    PERFORM routing._create_ledger_mirror('_part');
    CREATE TRIGGER mirror_to_partitioned AFTER INSERT OR UPDATE OR DELETE ON routing.routing_outcomes
        FOR EACH ROW EXECUTE FUNCTION routing._mirror_routing_outcomes();
    CREATE TRIGGER mirror_to_partitioned AFTER INSERT OR UPDATE OR DELETE ON routing.inferences
        FOR EACH ROW EXECUTE FUNCTION routing._mirror_inferences();

    -- Every row committed before the triggers has an id at most these; every later write
    -- is mirrored (the triggers waited for the writers in flight).
    INSERT INTO routing.ledger_migration (phase, outcomes_until, inferences_until)
    VALUES ('copying',
            coalesce((SELECT max(o.id) FROM routing.routing_outcomes o), 0),
            coalesce((SELECT max(i.id) FROM routing.inferences i), 0));
    RETURN 'copying';
END
$$;
COMMENT ON FUNCTION routing.migrate_ledger_start() IS
    'Online migration to the partitioned ledger, step 1: builds the empty partitioned twins (routing_outcomes_part, inferences_part) and mirror triggers on the live tables, in the caller''s transaction (lock_timeout 100ms: 55P03, run it again). Then migrate_ledger_copy until 0, migrate_ledger_verify, migrate_ledger_switch, migrate_ledger_finish; migrate_ledger_back_out at any point before finish. 55000 when already partitioned or a migration runs. Owner only.';

CREATE OR REPLACE FUNCTION routing.migrate_ledger_copy(p_batch int DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_m    routing.ledger_migration;
    v_hi   bigint;
    v_rows bigint;
BEGIN
    PERFORM routing._require_int('migrate_ledger_copy', 'p_batch', p_batch, 1, 1000000);
    PERFORM set_config('lock_timeout', '2s', true);
    v_m := routing._ledger_migration_state();
    IF v_m.phase <> 'copying' THEN
        RETURN 0;
    END IF;

    IF v_m.outcomes_copied_to < v_m.outcomes_until THEN
        SELECT max(b.id) INTO v_hi
          FROM (SELECT o.id FROM routing.routing_outcomes o
                 WHERE o.id > v_m.outcomes_copied_to AND o.id <= v_m.outcomes_until
                 ORDER BY o.id LIMIT p_batch) b;
        v_hi := coalesce(v_hi, v_m.outcomes_until);
        INSERT INTO routing.outcome_request_keys (agent_id, request_id, outcome_id, outcome_created_at)
        SELECT o.agent_id, o.request_id, o.id, o.created_at
          FROM routing.routing_outcomes o
         WHERE o.id > v_m.outcomes_copied_to AND o.id <= v_hi
        ON CONFLICT (agent_id, request_id) DO NOTHING;
        INSERT INTO routing.routing_outcomes_part
        SELECT o.* FROM routing.routing_outcomes o
         WHERE o.id > v_m.outcomes_copied_to AND o.id <= v_hi
           FOR KEY SHARE
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        UPDATE routing.ledger_migration
           SET outcomes_copied_to = v_hi, rows_copied = rows_copied + v_rows;
        RETURN greatest(v_rows, 1);
    END IF;

    IF v_m.inferences_copied_to < v_m.inferences_until THEN
        SELECT max(b.id) INTO v_hi
          FROM (SELECT i.id FROM routing.inferences i
                 WHERE i.id > v_m.inferences_copied_to AND i.id <= v_m.inferences_until
                 ORDER BY i.id LIMIT p_batch) b;
        v_hi := coalesce(v_hi, v_m.inferences_until);
        EXECUTE (
            SELECT 'INSERT INTO routing.inferences_part SELECT '
                   || string_agg(CASE WHEN a.attname = 'outcome_created_at'
                                      THEN 'coalesce(ow.created_at, ln.created_at, i.created_at)'
                                      ELSE 'i.' || quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
                   || ' FROM routing.inferences i'
                      ' LEFT JOIN routing.routing_outcomes ow ON ow.id = i.outcome_id'
                      ' LEFT JOIN LATERAL (SELECT min(l.created_at) AS created_at FROM routing.routing_outcomes l'
                      '                     WHERE l.inference_id = i.id AND i.outcome_id IS NULL) ln ON true'
                      ' WHERE i.id > $1 AND i.id <= $2 FOR KEY SHARE OF i ON CONFLICT DO NOTHING'
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = 'routing.inferences'::regclass AND a.attnum > 0 AND NOT a.attisdropped)
        USING v_m.inferences_copied_to, v_hi;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        UPDATE routing.ledger_migration
           SET inferences_copied_to = v_hi, rows_copied = rows_copied + v_rows;
        RETURN greatest(v_rows, 1);
    END IF;
    RETURN 0;
END
$$;
COMMENT ON FUNCTION routing.migrate_ledger_copy(int) IS
    'Online migration, step 2: copies the next p_batch (1..1000000) rows of history into the partitioned twins (outcomes with their request keys, then attempts with their partition key), ON CONFLICT DO NOTHING (a mirrored row is newer). Returns a positive count while there was work, 0 once the history is copied; one transaction per call. 55000 when no migration runs; 22023 on a bad p_batch. Owner only.';

CREATE OR REPLACE FUNCTION routing.migrate_ledger_verify()
RETURNS TABLE (table_name text, live_rows bigint, partitioned_rows bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_m routing.ledger_migration;
    v_c record;
BEGIN
    v_m := routing._ledger_migration_state();
    IF v_m.phase <> 'copying' OR v_m.outcomes_copied_to < v_m.outcomes_until
       OR v_m.inferences_copied_to < v_m.inferences_until THEN
        RAISE EXCEPTION 'migrate_ledger_verify: the history is not copied yet'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run routing.migrate_ledger_copy() until it returns 0';
    END IF;
    -- One snapshot: a mirrored write is in the same transaction as its source.
    SELECT (SELECT count(*) FROM routing.routing_outcomes) AS o,
           (SELECT count(*) FROM routing.routing_outcomes_part) AS op,
           (SELECT count(*) FROM routing.outcome_request_keys) AS k,
           (SELECT count(*) FROM routing.inferences) AS i,
           (SELECT count(*) FROM routing.inferences_part) AS ip
      INTO v_c;
    IF v_c.o <> v_c.op OR v_c.o <> v_c.k OR v_c.i <> v_c.ip THEN
        RAISE EXCEPTION 'migrate_ledger_verify: live and partitioned tables differ: outcomes % / %, keys %, attempts % / %',
                        v_c.o, v_c.op, v_c.k, v_c.i, v_c.ip
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'back out with routing.migrate_ledger_back_out() and start again';
    END IF;
    UPDATE routing.ledger_migration SET verified_at = clock_timestamp();
    RETURN QUERY VALUES ('routing_outcomes', v_c.o, v_c.op), ('inferences', v_c.i, v_c.ip);
END
$$;
COMMENT ON FUNCTION routing.migrate_ledger_verify() IS
    'Online migration, step 3: once the history is copied, compares the live and partitioned row counts (and the request keys) in one snapshot; equal, it records the verification the switch-over requires and returns the counts. 55000 when not copied yet or when they differ (back out and start again). Owner only.';

-- The switch-over and its reverse: the live tables hand their names, indexes, sequence
-- positions, triggers, views, functions, grants and comments to the incoming ones.
CREATE OR REPLACE FUNCTION routing._swap_ledger_tables(p_to_partitioned boolean, p_lock_timeout interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_out_suffix text := CASE WHEN p_to_partitioned THEN '_v01' ELSE '_part' END;
    v_in_suffix  text := CASE WHEN p_to_partitioned THEN '_part' ELSE '_v01' END;
    v_out_index  text := CASE WHEN p_to_partitioned THEN '_v01' ELSE '_p' END;
    v_in_index   text := CASE WHEN p_to_partitioned THEN '_p' ELSE '_v01' END;
    v_table      text;
    v_views      jsonb;
    v_funcs      jsonb;
    v_v          record;
    v_d          record;
    v_last       record;
    v_acl        jsonb;
    v_comment    text;
BEGIN
    PERFORM set_config('lock_timeout', ceil(extract(epoch FROM p_lock_timeout) * 1000)::bigint || 'ms', true);
    LOCK TABLE routing.routing_outcomes, routing.inferences IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('LOCK TABLE routing.%I, routing.%I IN ACCESS EXCLUSIVE MODE',
                   'routing_outcomes' || v_in_suffix, 'inferences' || v_in_suffix);
    PERFORM set_config('search_path', 'pg_catalog', true);

    PERFORM set_config('client_min_messages', 'warning', true);
    DROP TRIGGER IF EXISTS mirror_to_partitioned ON routing.routing_outcomes;
    DROP TRIGGER IF EXISTS mirror_to_partitioned ON routing.inferences;
    DROP TRIGGER IF EXISTS mirror_to_unpartitioned ON routing.routing_outcomes;
    DROP TRIGGER IF EXISTS mirror_to_unpartitioned ON routing.inferences;

    -- What must be re-created on the incoming tables, read while the names are the live
    -- ones: views over the ledger; functions taking a ledger row type (a new overload for
    -- the new type, the old one dropped); every other function naming a ledger table,
    -- re-created as it is so that every session recompiles it against the new tables.
    SELECT coalesce(jsonb_agg(jsonb_build_object('name', v.oid::regclass::text, 'def', pg_get_viewdef(v.oid))
                              ORDER BY v.oid), '[]')
      INTO v_views
      FROM pg_class v
     WHERE v.relkind = 'v'
       AND v.oid IN (SELECT r.ev_class FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
                      WHERE d.refobjid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass));
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'oid', f.oid, 'def', pg_get_functiondef(f.oid),
               'rowtype', f.oid IN (SELECT d.objid FROM pg_depend d
                                     WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_type'::regclass
                                       AND d.refobjid IN (SELECT c.reltype FROM pg_class c
                                                           WHERE c.oid IN ('routing.routing_outcomes'::regclass,
                                                                           'routing.inferences'::regclass))),
               'comment', obj_description(f.oid, 'pg_proc'),
               'acl', coalesce((SELECT jsonb_agg(a.grantee::regrole::text)
                                  FROM aclexplode(f.proacl) a
                                 WHERE a.grantee <> f.proowner AND a.grantee <> 0), '[]'))
             ORDER BY f.oid), '[]')
      INTO v_funcs
      FROM pg_proc f
     WHERE f.pronamespace = 'routing'::regnamespace AND f.prokind = 'f'
       AND f.prolang IN (SELECT l.oid FROM pg_language l WHERE l.lanname IN ('plpgsql', 'sql'))
       AND f.proname NOT LIKE '\_mirror\_%' AND f.proname NOT LIKE 'migrate\_ledger\_%'
       AND f.proname <> '_swap_ledger_tables'
       AND f.prosrc ~ 'routing\.(routing_outcomes|inferences)\M';

    FOREACH v_table IN ARRAY ARRAY['routing_outcomes', 'inferences'] LOOP
        -- The live sequence first: renaming it locks it, so no nextval can pass the
        -- position read below.
        EXECUTE format('ALTER SEQUENCE routing.%I RENAME TO %I', v_table || '_id_seq', v_table || v_out_suffix || '_id_seq');
        EXECUTE format('SELECT last_value, is_called FROM routing.%I', v_table || v_out_suffix || '_id_seq') INTO v_last;
        PERFORM setval(format('routing.%I', v_table || v_in_suffix || '_id_seq'), v_last.last_value, v_last.is_called);
        EXECUTE format('ALTER SEQUENCE routing.%I RENAME TO %I', v_table || v_in_suffix || '_id_seq', v_table || '_id_seq');

        SELECT obj_description(('routing.' || v_table)::regclass, 'pg_class') INTO v_comment;
        SELECT coalesce(jsonb_agg(jsonb_build_array(a.grantee::regrole::text, a.privilege_type)), '[]') INTO v_acl
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = ('routing.' || v_table)::regclass AND a.grantee <> c.relowner AND a.grantee <> 0;
        PERFORM routing._rename_ledger_indexes(('routing.' || v_table)::regclass, '', v_out_index);
        EXECUTE format('ALTER TABLE routing.%I RENAME TO %I', v_table, v_table || v_out_suffix);
        PERFORM routing._rename_ledger_indexes(format('routing.%I', v_table || v_in_suffix)::regclass, v_in_index, '');
        EXECUTE format('ALTER TABLE routing.%I RENAME TO %I', v_table || v_in_suffix, v_table);
        EXECUTE format('COMMENT ON TABLE routing.%I IS %L', v_table, v_comment);
        EXECUTE format('REVOKE ALL ON routing.%I FROM PUBLIC', v_table);
        FOR v_d IN SELECT a ->> 0 AS grantee, a ->> 1 AS priv FROM jsonb_array_elements(v_acl) a LOOP
            EXECUTE format('GRANT %s ON routing.%I TO %I', v_d.priv, v_table, v_d.grantee);
        END LOOP;
    END LOOP;

    IF p_to_partitioned THEN
        FOR v_d IN SELECT * FROM routing.ledger_layout_ddl d
                    WHERE d.kind = 'trigger' OR (d.kind = 'constraint' AND NOT d.validated)
                    ORDER BY d.ordinal LOOP
            IF v_d.kind = 'trigger' THEN
                EXECUTE v_d.definition;
            ELSIF v_d.definition ~ '^FOREIGN KEY .* REFERENCES routing\.(routing_outcomes|inferences)\(' THEN
                CONTINUE;  -- the pairs' foreign keys below
            ELSE
                EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', v_d.table_name, v_d.name, v_d.definition);
            END IF;
        END LOOP;
        FOR v_d IN SELECT * FROM routing.ledger_layout_ddl d WHERE d.kind = 'comment' ORDER BY d.ordinal LOOP
            CONTINUE WHEN NOT EXISTS (SELECT FROM pg_constraint c
                                       WHERE c.conrelid = v_d.table_name::regclass AND c.conname = v_d.name);
            EXECUTE format('COMMENT ON CONSTRAINT %I ON %s IS %L', v_d.name, v_d.table_name, v_d.definition);
        END LOOP;
        FOR v_d IN SELECT DISTINCT p.suffix FROM routing.ledger_partitions p LOOP
            PERFORM routing._link_partition_pair(v_d.suffix, true);
        END LOOP;
        CREATE TRIGGER claim_request_key
            BEFORE INSERT ON routing.routing_outcomes
            FOR EACH ROW EXECUTE FUNCTION routing._claim_request_key();
        CREATE TRIGGER follow_outcome_created_at
            BEFORE UPDATE OF outcome_id ON routing.inferences
            FOR EACH ROW EXECUTE FUNCTION routing._follow_outcome_created_at();
        -- The old tables follow every change until finish (or the back-out): mirrored
        -- rows must not settle budgets or meet the guards twice.
        ALTER TABLE routing.routing_outcomes_v01 DISABLE TRIGGER USER;
        ALTER TABLE routing.inferences_v01 DISABLE TRIGGER USER;
        PERFORM routing._create_ledger_mirror('_v01');
        CREATE TRIGGER mirror_to_unpartitioned AFTER INSERT OR UPDATE OR DELETE ON routing.routing_outcomes
            FOR EACH ROW EXECUTE FUNCTION routing._mirror_routing_outcomes();
        CREATE TRIGGER mirror_to_unpartitioned AFTER INSERT OR UPDATE OR DELETE ON routing.inferences
            FOR EACH ROW EXECUTE FUNCTION routing._mirror_inferences();
    ELSE
        ALTER TABLE routing.routing_outcomes ENABLE TRIGGER USER;
        ALTER TABLE routing.inferences ENABLE TRIGGER USER;
    END IF;

    FOR v_v IN SELECT e.x ->> 'name' AS name, e.x ->> 'def' AS def FROM jsonb_array_elements(v_views) e(x) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', v_v.name, v_v.def);
    END LOOP;
    FOR v_v IN SELECT (e.x ->> 'oid')::oid AS oid, e.x ->> 'def' AS def, (e.x ->> 'rowtype')::boolean AS rowtype,
                      e.x ->> 'comment' AS comment, e.x -> 'acl' AS acl
                 FROM jsonb_array_elements(v_funcs) e(x) ORDER BY (e.x ->> 'rowtype')::boolean DESC LOOP
        EXECUTE v_v.def;
        IF v_v.rowtype THEN
            EXECUTE format('DROP FUNCTION %s', v_v.oid::regprocedure);
        END IF;
    END LOOP;
    -- The new overloads: grants and comments as the old ones had them.
    FOR v_v IN SELECT e.x ->> 'def' AS def, e.x ->> 'comment' AS comment, e.x -> 'acl' AS acl
                 FROM jsonb_array_elements(v_funcs) e(x) WHERE (e.x ->> 'rowtype')::boolean LOOP
        SELECT f.oid::regprocedure::text AS sig INTO v_d
          FROM pg_proc f
         WHERE f.pronamespace = 'routing'::regnamespace
           AND pg_get_functiondef(f.oid) = v_v.def;
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_d.sig);
        IF v_v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON FUNCTION %s IS %L', v_d.sig, v_v.comment);
        END IF;
        FOR v_last IN SELECT a #>> '{}' AS grantee FROM jsonb_array_elements(v_v.acl) a LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_d.sig, v_last.grantee);
        END LOOP;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION routing.migrate_ledger_switch(p_lock_timeout interval DEFAULT '100ms')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_m routing.ledger_migration;
BEGIN
    PERFORM routing._require_interval('migrate_ledger_switch', 'p_lock_timeout', p_lock_timeout,
                                      interval '1 millisecond', interval '1 minute');
    v_m := routing._ledger_migration_state();
    IF v_m.phase <> 'copying' OR v_m.verified_at IS NULL THEN
        RAISE EXCEPTION 'migrate_ledger_switch: the copy is not verified'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run routing.migrate_ledger_copy() until 0, then routing.migrate_ledger_verify()';
    END IF;
    PERFORM routing._swap_ledger_tables(true, p_lock_timeout);
    UPDATE routing.ledger_migration SET phase = 'switched', switched_at = clock_timestamp();
    RETURN 'switched';
END
$$;
COMMENT ON FUNCTION routing.migrate_ledger_switch(interval) IS
    'Online migration, step 4, the bounded switch-over: waits at most p_lock_timeout (1 ms .. 1 min, default 100 ms; 55P03: call it again) for ACCESS EXCLUSIVE on the ledger tables, then, catalog-only, hands the names, indexes, sequence positions, triggers, views and functions to the partitioned tables; the old ones stay as *_v01, kept in step for a back-out. 55000 unless the copy was verified. Owner only.';

CREATE OR REPLACE FUNCTION routing.migrate_ledger_finish()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_m routing.ledger_migration;
BEGIN
    v_m := routing._ledger_migration_state();
    IF v_m.phase <> 'switched' THEN
        RAISE EXCEPTION 'migrate_ledger_finish: the ledger is not switched yet'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'see routing.migrate_ledger_switch';
    END IF;
    PERFORM set_config('lock_timeout', '100ms', true);
    LOCK TABLE routing.routing_outcomes, routing.inferences IN ACCESS EXCLUSIVE MODE;
    DROP TRIGGER mirror_to_unpartitioned ON routing.routing_outcomes;
    DROP TRIGGER mirror_to_unpartitioned ON routing.inferences;
    DROP TABLE routing.routing_outcomes_v01, routing.inferences_v01;
    DROP FUNCTION routing._mirror_routing_outcomes();
    DROP FUNCTION routing._mirror_inferences();
    DELETE FROM routing.ledger_migration;
    RETURN 'partitioned';
END
$$;
COMMENT ON FUNCTION routing.migrate_ledger_finish() IS
    'Online migration, step 5: drops the old tables (*_v01) and their mirror triggers, catalog-only under a bounded lock (100 ms; 55P03: call it again); the back-out is no longer possible, routing.unpartition_ledger still is. Then run routing.validate_partition_links(). 55000 before the switch-over. Owner only.';

CREATE OR REPLACE FUNCTION routing.validate_partition_links()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_c record;
    v_n bigint := 0;
BEGIN
    IF EXISTS (SELECT FROM routing.ledger_migration) THEN
        RAISE EXCEPTION 'validate_partition_links: a migration is still running'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'finish it first (routing.migrate_ledger_finish)';
    END IF;
    FOR v_c IN SELECT c.conrelid::regclass::text AS t, c.conname FROM pg_constraint c
                WHERE c.contype = 'f' AND NOT c.convalidated
                  AND c.conrelid IN (SELECT p.partition_name::regclass FROM routing.ledger_partitions p)
                  AND c.conname ~ '_(inference|outcome)_fkey$'
                ORDER BY 1, 2 LOOP
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', v_c.t, v_c.conname);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION routing.validate_partition_links() IS
    'After the online migration: validates the partition pairs'' foreign keys (added NOT VALID at the switch-over, enforced for new rows since) against the copied history, SHARE UPDATE EXCLUSIVE per partition, so traffic continues. Returns how many it validated; 23503 naming the link history breaks; 55000 while a migration runs. Owner only.';

CREATE OR REPLACE FUNCTION routing.migrate_ledger_back_out(p_lock_timeout interval DEFAULT '100ms')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_m routing.ledger_migration;
BEGIN
    PERFORM routing._require_interval('migrate_ledger_back_out', 'p_lock_timeout', p_lock_timeout,
                                      interval '1 millisecond', interval '1 minute');
    v_m := routing._ledger_migration_state();
    PERFORM set_config('lock_timeout', ceil(extract(epoch FROM p_lock_timeout) * 1000)::bigint || 'ms', true);
    IF v_m.phase = 'switched' THEN
        PERFORM routing._swap_ledger_tables(false, p_lock_timeout);
    ELSE
        LOCK TABLE routing.routing_outcomes, routing.inferences IN ACCESS EXCLUSIVE MODE;
        DROP TRIGGER mirror_to_partitioned ON routing.routing_outcomes;
        DROP TRIGGER mirror_to_partitioned ON routing.inferences;
    END IF;
    DROP TABLE routing.routing_outcomes_part, routing.inferences_part;
    DROP FUNCTION routing._mirror_routing_outcomes();
    DROP FUNCTION routing._mirror_inferences();
    TRUNCATE routing.outcome_request_keys;
    DELETE FROM routing.ledger_layout_ddl;
    DELETE FROM routing.ledger_migration;
    RETURN 'unpartitioned';
END
$$;
COMMENT ON FUNCTION routing.migrate_ledger_back_out(interval) IS
    'Backs the online migration out, before migrate_ledger_finish: during the copy it drops the partitioned twins and the mirror triggers; after the switch-over it hands the names back to the old tables (which followed every change) under the same bounded lock (p_lock_timeout; 55P03: call it again) and drops the partitioned ones. The ledger is then exactly as before. 55000 when no migration runs. Owner only.';

REVOKE ALL ON FUNCTION routing._ledger_migration_state(), routing._attempt_partition_key(bigint, bigint, timestamptz),
    routing._create_ledger_mirror(text), routing._rename_ledger_indexes(regclass, text, text),
    routing._swap_ledger_tables(boolean, interval),
    routing.migrate_ledger_start(), routing.migrate_ledger_copy(int), routing.migrate_ledger_verify(),
    routing.migrate_ledger_switch(interval), routing.migrate_ledger_finish(), routing.validate_partition_links(),
    routing.migrate_ledger_back_out(interval) FROM PUBLIC;

COMMIT;
