-- pgTAP for the validate_vocabularies change: the five CHECKs vocabularies re-added NOT
-- VALID are validated, under SHARE UPDATE EXCLUSIVE (writes go on while it scans), a
-- re-run is harmless, and the validation fails (23514) on a row written by hand while a
-- CHECK was NOT VALID: the only way the change can fail.
BEGIN;
SELECT plan(5);

CREATE TEMP TABLE t_checks (t regclass, conname text);
INSERT INTO t_checks VALUES
    ('routing.routing_outcomes', 'routing_outcomes_outcome_status_check'),
    ('routing.routing_outcomes', 'routing_outcomes_judge_status_check'),
    ('routing.inferences', 'inferences_error_code_check'),
    ('routing.retry_policy', 'retry_policy_error_code_check'),
    ('routing.retry_policy', 'retry_policy_give_up_status_check');

SELECT results_eq(
    $$SELECT k.t::text, k.conname, c.convalidated, pg_get_constraintdef(c.oid) ~ 'routing\._[a-z_]+\(\)'
        FROM t_checks k LEFT JOIN pg_catalog.pg_constraint c ON c.conrelid = k.t AND c.conname = k.conname
       ORDER BY 1, 2$$,
    $$VALUES ('routing.inferences', 'inferences_error_code_check', true, true),
             ('routing.retry_policy', 'retry_policy_error_code_check', true, true),
             ('routing.retry_policy', 'retry_policy_give_up_status_check', true, true),
             ('routing.routing_outcomes', 'routing_outcomes_judge_status_check', true, true),
             ('routing.routing_outcomes', 'routing_outcomes_outcome_status_check', true, true)$$,
    'the five CHECKs call their vocabulary function and are validated');
SELECT is_empty(
    $$SELECT k.conname FROM t_checks k JOIN pg_catalog.pg_constraint c ON c.conrelid = k.t AND c.conname = k.conname
       WHERE pg_get_constraintdef(c.oid) LIKE '%NOT VALID%'$$,
    'no definition carries NOT VALID any more');

-- The validation again, as a re-deploy runs it. Nothing in this transaction has locked
-- the tables before.
CREATE FUNCTION pg_temp.validate_all() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM t_checks LOOP
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', v.t, v.conname);
    END LOOP;
END
$$;
SELECT lives_ok($$SELECT pg_temp.validate_all()$$, 'VALIDATE CONSTRAINT on the five validated CHECKs is a no-op');
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", string_agg(l.mode, ',' ORDER BY l.mode)
        FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
       WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
         AND l.relation IN ('routing.inferences'::regclass, 'routing.routing_outcomes'::regclass, 'routing.retry_policy'::regclass)
       GROUP BY 1 ORDER BY 1$$,
    $$VALUES ('inferences', 'ShareUpdateExclusiveLock'), ('retry_policy', 'ShareUpdateExclusiveLock'),
             ('routing_outcomes', 'ShareUpdateExclusiveLock')$$,
    'validating takes SHARE UPDATE EXCLUSIVE on each table, nothing stronger (writes go on)');

-- A row the CHECK never saw (written by hand before it was re-added NOT VALID): the
-- validation refuses it.
ALTER TABLE routing.retry_policy DROP CONSTRAINT retry_policy_give_up_status_check;
UPDATE routing.retry_policy SET give_up_status = 'succeeded' WHERE error_code = 'timeout';
ALTER TABLE routing.retry_policy
    ADD CONSTRAINT retry_policy_give_up_status_check
        CHECK (give_up_status = ANY (routing._outcome_statuses())
               AND give_up_status NOT IN ('succeeded', 'failed_pre_dispatch', 'rejected')) NOT VALID;
SELECT throws_ok(
    $$ALTER TABLE routing.retry_policy VALIDATE CONSTRAINT retry_policy_give_up_status_check$$,
    '23514', NULL, 'VALIDATE fails on a row outside the vocabulary written while the CHECK was NOT VALID');

SELECT * FROM finish();
ROLLBACK;
