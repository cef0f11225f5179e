-- pgTAP for the validate_inference_streaming change: the six CHECKs the streaming changes
-- re-added NOT VALID (inference_streaming, outcome_stream_statuses,
-- retry_policy_stream_codes) are validated, under SHARE UPDATE EXCLUSIVE (writes go on
-- while it scans), a re-run is harmless, and a validated CHECK refuses what it does not
-- admit. The validation is also shown failing (23514) on a row written by hand while a
-- CHECK was NOT VALID: the only way the change can fail.
BEGIN;
SELECT plan(12);

CREATE TEMP TABLE t_checks (t regclass, conname text);
INSERT INTO t_checks VALUES
    ('routing.inferences', 'inferences_error_code_check'),
    ('routing.inferences', 'inference_usage_source_known'),
    ('routing.inferences', 'inference_ttft_non_negative'),
    ('routing.routing_outcomes', 'routing_outcomes_outcome_status_check'),
    ('routing.retry_policy', 'retry_policy_error_code_check'),
    ('routing.retry_policy', 'retry_policy_give_up_status_check');

----------------------------------------------------------------------------- structure

SELECT results_eq(
    $$SELECT k.t::text, k.conname, c.contype::text, c.convalidated
        FROM t_checks k LEFT JOIN pg_catalog.pg_constraint c ON c.conrelid = k.t AND c.conname = k.conname
       ORDER BY 1, 2$$,
    $$VALUES ('routing.inferences', 'inference_ttft_non_negative', 'c', true),
             ('routing.inferences', 'inference_usage_source_known', 'c', true),
             ('routing.inferences', 'inferences_error_code_check', 'c', true),
             ('routing.retry_policy', 'retry_policy_error_code_check', 'c', true),
             ('routing.retry_policy', 'retry_policy_give_up_status_check', 'c', true),
             ('routing.routing_outcomes', 'routing_outcomes_outcome_status_check', 'c', true)$$,
    'the six CHECKs exist and are validated');
SELECT is_empty(
    $$SELECT k.conname FROM t_checks k JOIN pg_catalog.pg_constraint c ON c.conrelid = k.t AND c.conname = k.conname
       WHERE pg_get_constraintdef(c.oid) LIKE '%NOT VALID%'$$,
    'no definition carries NOT VALID any more');

-- The validation again, as a re-deploy runs it: it takes SHARE UPDATE EXCLUSIVE on the
-- three tables (never a lock that blocks writes) and is a no-op. Nothing in this
-- transaction has locked them before.
CREATE FUNCTION pg_temp.validate_all() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM t_checks LOOP
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', v.t, v.conname);
    END LOOP;
END
$$;
SELECT lives_ok($$SELECT pg_temp.validate_all()$$, 'VALIDATE CONSTRAINT on the six validated CHECKs is a no-op');
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", string_agg(l.mode, ',' ORDER BY l.mode)
        FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
       WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
         AND l.relation IN ('routing.inferences'::regclass, 'routing.routing_outcomes'::regclass, 'routing.retry_policy'::regclass)
       GROUP BY 1 ORDER BY 1$$,
    $$VALUES ('inferences', 'ShareUpdateExclusiveLock'), ('retry_policy', 'ShareUpdateExclusiveLock'),
             ('routing_outcomes', 'ShareUpdateExclusiveLock')$$,
    'validating takes SHARE UPDATE EXCLUSIVE on each table, nothing stronger (writes go on)');

----------------------------------------------------------------------------- behaviour

INSERT INTO routing.models (slug, provider, provider_model) VALUES ('vis-model', 'p', 'm');
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000005d1', 'f0000000-0000-4000-8000-0000000005d1', 'validated');

SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, error_code, error_message, completed_at)
      VALUES ('a0000000-0000-4000-8000-0000000005d1', 'vis-model', 'failed', 'stream_exploded', 'x', now())$$,
    '23514', 'new row for relation "inferences" violates check constraint "inferences_error_code_check"',
    'inferences_error_code_check refuses an unknown error code');
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, usage_source)
      VALUES ('a0000000-0000-4000-8000-0000000005d1', 'vis-model', 'guessed')$$,
    '23514', 'new row for relation "inferences" violates check constraint "inference_usage_source_known"',
    'inference_usage_source_known refuses an unknown usage source');
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, ttft_ms)
      VALUES ('a0000000-0000-4000-8000-0000000005d1', 'vis-model', -1)$$,
    '23514', 'new row for relation "inferences" violates check constraint "inference_ttft_non_negative"',
    'inference_ttft_non_negative refuses a negative ttft_ms');
SELECT lives_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, error_code, error_message, completed_at,
                                      usage_source, ttft_ms, streamed, first_token_at)
      VALUES ('a0000000-0000-4000-8000-0000000005d1', 'vis-model', 'failed', 'cancelled', 'x', now(),
              'estimated', 0, true, now())$$,
    'a row using the streaming vocabulary is admitted by all three');

-- A row written by hand while a CHECK was NOT VALID (as between the streaming changes
-- and this one): the validation refuses to proceed, naming the constraint.
ALTER TABLE routing.inferences DROP CONSTRAINT inference_usage_source_known;
INSERT INTO routing.inferences (agent_id, model_slug, usage_source)
VALUES ('a0000000-0000-4000-8000-0000000005d1', 'vis-model', 'guessed');
ALTER TABLE routing.inferences ADD CONSTRAINT inference_usage_source_known
    CHECK (usage_source IN ('provider', 'estimated')) NOT VALID;
SELECT ok(
    NOT (SELECT convalidated FROM pg_catalog.pg_constraint
          WHERE conrelid = 'routing.inferences'::regclass AND conname = 'inference_usage_source_known'),
    'fixture: the CHECK is NOT VALID again and a violating row is stored');
SELECT throws_ok(
    $$ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_usage_source_known$$,
    '23514', 'check constraint "inference_usage_source_known" of relation "inferences" is violated by some row',
    'the validation fails (23514) on a hand-written row the widened list does not admit');
DELETE FROM routing.inferences WHERE usage_source = 'guessed';
SET CONSTRAINTS ALL IMMEDIATE;  -- the delete's deferred foreign-key check, before ALTER TABLE
SELECT lives_ok(
    $$ALTER TABLE routing.inferences VALIDATE CONSTRAINT inference_usage_source_known$$,
    'once the row is gone it validates');
SELECT ok(
    (SELECT convalidated FROM pg_catalog.pg_constraint
      WHERE conrelid = 'routing.inferences'::regclass AND conname = 'inference_usage_source_known'),
    'and is validated again');

SELECT * FROM finish();
ROLLBACK;
