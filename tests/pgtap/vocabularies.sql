-- pgTAP for the vocabularies change: each word list and the orphan test defined once, in
-- an IMMUTABLE function; every CHECK that needs a list calls its function (and refuses a
-- word outside it with 23514); no other function, view or CHECK spells a list out; the
-- users of the orphan test agree on which outcomes are orphans, and the partial indexes
-- on it still answer the queries that call it.
BEGIN;
SELECT plan(24);

\ir helpers/plan_of.sql

----------------------------------------------------------------------------- the homes

SELECT results_eq(
    $$SELECT p.oid::regprocedure::text COLLATE "default", l.lanname::text COLLATE "default", p.provolatile::text COLLATE "default",
             p.proparallel::text COLLATE "default", p.prosecdef, p.proisstrict, p.proconfig IS NULL
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.oid IN ('routing._client_error_codes()'::regprocedure, 'routing._error_codes()'::regprocedure,
                       'routing._outcome_statuses()'::regprocedure, 'routing._judge_verdicts()'::regprocedure,
                       'routing._judge_statuses()'::regprocedure,
                       'routing._outcome_is_orphan(bigint, text, text)'::regprocedure)
       ORDER BY 1$$,
    $$VALUES ('routing._client_error_codes()', 'sql', 'i', 's', false, false, true),
             ('routing._error_codes()', 'plpgsql', 'i', 's', false, false, true),
             ('routing._judge_statuses()', 'plpgsql', 'i', 's', false, false, true),
             ('routing._judge_verdicts()', 'plpgsql', 'i', 's', false, false, true),
             ('routing._outcome_is_orphan(bigint,text,text)', 'sql', 'i', 's', false, false, true),
             ('routing._outcome_statuses()', 'plpgsql', 'i', 's', false, false, true)$$,
    'each home is IMMUTABLE, PARALLEL SAFE, INVOKER, not STRICT, with no SET clause; the lists PL/pgSQL (folded where a CHECK is prepared), the orphan test SQL (inlined)');
SELECT is(routing._judge_verdicts(), ARRAY['labeled', 'error', 'cannot_evaluate'], 'the judge verdicts');
SELECT is(routing._judge_statuses(), ARRAY['unlabeled', 'claimed', 'labeled', 'error', 'cannot_evaluate'],
    'the judge statuses: the queue''s two, then the verdicts');
SELECT is(routing._error_codes(), routing._client_error_codes() || 'abandoned'::text,
    'the error codes: the client''s and the reaper''s abandoned');
SELECT set_eq($$SELECT unnest(routing._outcome_statuses())$$,
    ARRAY['succeeded', 'failed_rate_limited', 'failed_provider', 'failed_timeout', 'failed_bad_request',
          'failed_client', 'failed_abandoned', 'failed_pre_dispatch', 'rejected',
          'failed_stream_interrupted', 'cancelled'],
    'the outcome statuses, as the CHECK held them at @v0.3.0');
SELECT is_empty(
    $$SELECT r.rolname, p.oid::regprocedure FROM pg_catalog.pg_proc p,
             pg_catalog.pg_roles r
       WHERE p.oid IN ('routing._client_error_codes()'::regprocedure, 'routing._error_codes()'::regprocedure,
                       'routing._outcome_statuses()'::regprocedure, 'routing._judge_verdicts()'::regprocedure,
                       'routing._judge_statuses()'::regprocedure,
                       'routing._outcome_is_orphan(bigint, text, text)'::regprocedure)
         AND r.rolname IN ('routing_app', 'routing_judge', 'routing_ops', 'routing_readonly')
         AND (r.rolname IN ('routing_judge', 'routing_readonly')) <> has_function_privilege(r.oid, p.oid, 'EXECUTE')$$,
    'the roles that read the ledger (routing_readonly, routing_judge) may call every home, routing_app and routing_ops none');
-- constraint_exclusion = on makes the planner fold the table's CHECKs for a plain SELECT,
-- as it does on every partition of a partitioned ledger by default.
SET LOCAL constraint_exclusion = on;
SET LOCAL ROLE routing_readonly;
SELECT lives_ok(
    $$SELECT count(*) FROM routing.routing_outcomes WHERE outcome_status = 'unknown' AND judge_status = 'unknown';
      SELECT count(*) FROM routing.inferences WHERE error_code = 'unknown';
      SELECT count(*) FROM routing.orphan_outcomes$$,
    'a reader whose plan considers the vocabulary CHECKs (routing_readonly) is not refused EXECUTE');
RESET ROLE;
SET LOCAL constraint_exclusion = partition;

----------------------------------------------------------------------------- the CHECKs

SELECT results_eq(
    $$SELECT c.conname::text COLLATE "default", pg_get_constraintdef(c.oid) COLLATE "default", c.convalidated
        FROM pg_catalog.pg_constraint c
       WHERE c.conname IN ('routing_outcomes_outcome_status_check', 'routing_outcomes_judge_status_check',
                           'inferences_error_code_check', 'retry_policy_error_code_check')
         AND c.connamespace = 'routing'::regnamespace
       ORDER BY 1$$,
    $$VALUES ('inferences_error_code_check', 'CHECK ((error_code = ANY (routing._error_codes())))', true),
             ('retry_policy_error_code_check', 'CHECK ((error_code = ANY (routing._error_codes())))', true),
             ('routing_outcomes_judge_status_check', 'CHECK ((judge_status = ANY (routing._judge_statuses())))', true),
             ('routing_outcomes_outcome_status_check', 'CHECK ((outcome_status = ANY (routing._outcome_statuses())))', true)$$,
    'each vocabulary CHECK calls its function, under its released name, validated (validate_vocabularies)');
SELECT alike(
    (SELECT pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
      WHERE c.conrelid = 'routing.retry_policy'::regclass AND c.conname = 'retry_policy_give_up_status_check'),
    'CHECK (((give_up_status = ANY (routing._outcome_statuses())) AND %',
    'retry_policy_give_up_status_check: an outcome status (less the three no failed attempt ends in)');
-- No CHECK, function body or view spells a list out any more (the homes aside, and
-- outcome_pre_dispatch_consistent / the rejected rules, which name one status each).
SELECT is_empty(
    $$SELECT c.conname FROM pg_catalog.pg_constraint c
       WHERE c.connamespace = 'routing'::regnamespace AND c.contype = 'c'
         AND pg_get_constraintdef(c.oid) ~ '''(rate_limited|cannot_evaluate|failed_timeout|unlabeled)'''$$,
    'no CHECK lists error codes, outcome statuses or judge statuses literally');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace AND p.proname <> '_judge_verdicts'
         AND p.prosrc ~ '''labeled''[^;]*''error''[^;]*''cannot_evaluate'''$$,
    'no function but routing._judge_verdicts() writes the verdict list');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'routing'::regnamespace AND p.proname <> '_outcome_is_orphan'
         AND p.prosrc ~ 'decision_rule\s*<>\s*''failed_pre_dispatch'''
      UNION ALL
      SELECT v.oid::regclass::text FROM pg_catalog.pg_class v
       WHERE v.relnamespace = 'routing'::regnamespace AND v.relkind = 'v'
         AND pg_get_viewdef(v.oid) ~ 'failed_pre_dispatch'$$,
    'no other function or view writes the orphan test out');

----------------------------------------------------------------------------- refusals

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('voc-model', 'tap', 'voc', 1, 2, 0.9, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000000e1', 'f0000000-0000-4000-8000-0000000000e1', 'vocabularies');
SELECT count(*) FROM generate_series(1, 2) g,
       routing.insert_decision('voc-' || g, 'a0000000-0000-4000-8000-0000000000e1', 'chat', 10, 10) d;

SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET outcome_status = 'failed_somehow', completed_at = now()
       WHERE request_id = 'voc-1'$$,
    '23514', NULL, 'an outcome status outside routing._outcome_statuses() is refused');
SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET outcome_status = 'succeeded', completed_at = now(), judge_status = 'maybe'
       WHERE request_id = 'voc-1'$$,
    '23514', NULL, 'a judge status outside routing._judge_statuses() is refused');
SELECT throws_ok(
    $$UPDATE routing.inferences SET status = 'failed', completed_at = now(), error_code = 'teapot', error_message = 'x'
       WHERE outcome_id = (SELECT id FROM routing.routing_outcomes WHERE request_id = 'voc-1')$$,
    '23514', NULL, 'an error code outside routing._error_codes() is refused');
SELECT throws_ok(
    $$UPDATE routing.retry_policy SET give_up_status = 'succeeded' WHERE error_code = 'timeout'$$,
    '23514', NULL, 'a give-up status that no failed attempt ends in is refused');
SELECT lives_ok(
    $$UPDATE routing.routing_outcomes SET outcome_status = 'cancelled', completed_at = now()
       WHERE request_id = 'voc-2'$$,
    'a status in the list is admitted (cancelled)');
SELECT lives_ok(
    $$UPDATE routing.inferences SET status = 'failed', completed_at = now(), error_code = 'abandoned', error_message = 'x'
       WHERE outcome_id = (SELECT id FROM routing.routing_outcomes WHERE request_id = 'voc-1')$$,
    'the reaper''s abandoned is admitted');
SELECT throws_ok(
    $$SELECT * FROM routing.record_judgement(1, 'maybe', NULL, 'r', 'judge')$$,
    '22023', NULL, 'record_judgement refuses a verdict outside routing._judge_verdicts() (22023)');

----------------------------------------------------------------------------- orphans

-- Orphans of an older write path (the constraint that forbids them set aside as the
-- history loader does), a rejected and a refused outcome (no inference, not orphans), and
-- the two written by the functions above.
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes DROP CONSTRAINT outcome_requires_inference_when_model_chosen;
INSERT INTO routing.routing_outcomes
       (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug, outcome_status,
        judge_status, created_at, completed_at)
SELECT v.id, 'voc-o' || v.id, 'a0000000-0000-4000-8000-0000000000e1', 'chat', v.rule, v.model, v.status,
       v.judge, now() - interval '2 hours', CASE WHEN v.status IS NOT NULL THEN now() - interval '2 hours' END
  FROM (VALUES
    (951, 'cheapest_clearing_floor', 'voc-model', 'succeeded', 'unlabeled'),
    (952, 'm_allowed_veto_applied', 'voc-model', NULL, NULL),
    (953, 'no_candidate_enrolled', NULL, 'rejected', NULL),
    (954, 'failed_pre_dispatch', 'voc-model', 'failed_pre_dispatch', NULL)
  ) AS v (id, rule, model, status, judge);
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE routing.routing_outcomes ADD CONSTRAINT outcome_requires_inference_when_model_chosen
    CHECK (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL) NOT VALID;

SELECT set_eq(
    $$SELECT id FROM routing.routing_outcomes o
       WHERE routing._outcome_is_orphan(o.inference_id, o.chosen_model_slug, o.decision_rule)$$,
    ARRAY[951, 952]::bigint[], 'the orphan test: the two dispatched outcomes with no attempt, nothing else');
SELECT set_eq(
    $$SELECT id FROM routing.routing_outcomes o
       WHERE NOT (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL)$$,
    $$SELECT id FROM routing.orphan_outcomes$$,
    'the contract''s CHECK outcome_requires_inference_when_model_chosen forbids exactly the rows of orphan_outcomes');
SELECT results_eq(
    $$SELECT (SELECT value FROM routing.integrity_report() WHERE metric = 'orphan_outcomes'),
             (SELECT count(DISTINCT m.outcome_id) FROM routing._orphan_matches('3 seconds') m),
             (SELECT count(*) FROM routing.orphan_outcomes)$$,
    $$VALUES (2::bigint, 2::bigint, 2::bigint)$$,
    'integrity_report, repair''s matching and the view orphan_outcomes count the same orphans');

-- The plans: the function is inlined before the planner matches partial indexes.
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT alike(
    pg_temp.plan_of($$SELECT count(*) FILTER (WHERE o.judge_status = 'unlabeled') FROM routing.routing_outcomes o
                       WHERE routing._outcome_is_orphan(o.inference_id, o.chosen_model_slug, o.decision_rule)$$),
    '%Index Only Scan using routing_outcomes_orphans_judge%',
    'integrity_report''s orphan judge count, written with the function, is index-only on routing_outcomes_orphans_judge');
SELECT alike(
    pg_temp.plan_of($$SELECT o.agent_id, o.chosen_model_slug, o.created_at FROM routing.routing_outcomes o
                       WHERE routing._outcome_is_orphan(o.inference_id, o.chosen_model_slug, o.decision_rule)
                       ORDER BY 1, 2, 3$$),
    '%Index Only Scan using routing_outcomes_orphans on%',
    'the orphans by agent and model (repair''s matching), written with the function, come off routing_outcomes_orphans');

SELECT * FROM finish();
ROLLBACK;
