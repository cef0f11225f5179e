-- pg_temp.catalog(exact_triggers): everything of schema routing a layout switch or its
-- back-out could change, one text row an object (the normalised catalog of
-- test_partition_migration.py): constraints with their validated state and comments,
-- indexes, triggers with their definitions and enabled state, views with their grants,
-- functions with their grants, definitions and comments, tables and sequences with their
-- grants, storage parameters and comments, and columns with their types, NOT NULL and
-- defaults. "Exactly as it was": the same rows before and after.
--
-- p_exact_triggers false compares a trigger's definition without its parentheses: a
-- trigger re-created from deparsed text (unpartition_ledger) gets the same WHEN clause
-- with its ORs nested, which pg_get_triggerdef prints with more parentheses.
CREATE FUNCTION pg_temp.catalog(p_exact_triggers boolean DEFAULT true) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
           || ' ' || c.convalidated || coalesce(obj_description(c.oid, 'pg_constraint'), '')
      FROM pg_constraint c WHERE c.connamespace = 'routing'::regnamespace
    UNION ALL SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
      JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = 'routing'::regnamespace
    UNION ALL SELECT t.tgrelid::regclass || ' ' || t.tgenabled::text || ' '
           || CASE WHEN p_exact_triggers THEN pg_get_triggerdef(t.oid)
                   ELSE translate(pg_get_triggerdef(t.oid), '()', '') END
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'routing'::regnamespace AND NOT t.tgisinternal
    UNION ALL SELECT v.oid::regclass || ' ' || pg_get_viewdef(v.oid) || coalesce(v.relacl::text, '')
      FROM pg_class v WHERE v.relkind = 'v' AND v.relnamespace = 'routing'::regnamespace
    UNION ALL SELECT p.oid::regprocedure || coalesce(p.proacl::text, '') || md5(pg_get_functiondef(p.oid))
           || coalesce(obj_description(p.oid, 'pg_proc'), '')
      FROM pg_proc p WHERE p.pronamespace = 'routing'::regnamespace AND p.prokind = 'f'
    UNION ALL SELECT c.oid::regclass || ' ' || c.relkind::text || coalesce(c.relacl::text, '')
           || coalesce(array_to_string(c.reloptions, ','), '') || coalesce(obj_description(c.oid, 'pg_class'), '')
      FROM pg_class c WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind IN ('r', 'p', 'S')
    UNION ALL SELECT a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' ' || a.attnotnull || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'routing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
       AND c.relkind IN ('r', 'p', 'v')
$$;
