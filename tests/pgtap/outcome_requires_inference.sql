-- pgTAP for the outcome_requires_inference change: the CHECK
-- outcome_requires_inference_when_model_chosen, exactly as the contract defines it, with
-- no in-flight escape (the old constraint's `outcome_status IS NULL` let orphans through).
BEGIN;
SELECT plan(12);

INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('00000000-0000-4000-8000-00000000b001', '00000000-0000-4000-8000-00000000b000', 'ori-test');
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('ori-m1', 'p1', 'model-1', 1, 2, 0.9, true);

-- The contract's predicate on a scratch table with the same column types: PostgreSQL
-- deparses both the same way iff the definitions are the same expression.
CREATE TEMP TABLE contract_reference (
    chosen_model_slug text,
    decision_rule     text,
    inference_id      bigint,
    CONSTRAINT contract_reference_check
        CHECK (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL)
);

SELECT is(
    (SELECT count(*)::int FROM pg_catalog.pg_constraint
      WHERE conrelid = 'routing.routing_outcomes'::regclass
        AND conname = 'outcome_requires_inference_when_model_chosen' AND contype = 'c'),
    1,
    'CHECK outcome_requires_inference_when_model_chosen exists on routing.routing_outcomes'
);
SELECT is(
    (SELECT pg_catalog.pg_get_constraintdef(oid, true) FROM pg_catalog.pg_constraint
      WHERE conrelid = 'routing.routing_outcomes'::regclass
        AND conname = 'outcome_requires_inference_when_model_chosen'),
    (SELECT pg_catalog.pg_get_constraintdef(oid, true) FROM pg_catalog.pg_constraint
      WHERE conrelid = 'contract_reference'::regclass AND conname = 'contract_reference_check'),
    'its definition is exactly the contract''s: chosen_model_slug IS NULL OR decision_rule = ''failed_pre_dispatch'' OR inference_id IS NOT NULL'
);
SELECT ok(
    (SELECT obj_description(oid, 'pg_constraint') IS NOT NULL FROM pg_catalog.pg_constraint
      WHERE conrelid = 'routing.routing_outcomes'::regclass
        AND conname = 'outcome_requires_inference_when_model_chosen'),
    'the constraint carries a comment saying why'
);
-- Recorded for an exact revert: on a fresh database nothing was there before.
SELECT results_eq(
    $$SELECT table_name, conname::text COLLATE "default", definition
        FROM routing.replaced_constraints
       WHERE change = 'outcome_requires_inference'$$,
    $$VALUES ('routing.routing_outcomes', 'outcome_requires_inference_when_model_chosen', NULL::text)$$,
    'the deploy recorded that no constraint of that name existed before it (revert drops it, restores nothing)'
);

-- The old two-phase write: outcome first, inference back-filled later. Refused now,
-- in flight (the old escape) and terminal alike.
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, chosen_model_slug, attempts)
      VALUES ('ori-1', '00000000-0000-4000-8000-00000000b001', 'general', 'cheapest_clearing_floor', 'ori-m1', 1)$$,
    '23514',
    'new row for relation "routing_outcomes" violates check constraint "outcome_requires_inference_when_model_chosen"',
    'a dispatched in-flight outcome with NULL inference_id is refused (no outcome_status IS NULL escape)'
);
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, chosen_model_slug,
                                            outcome_status, completed_at, attempts)
      VALUES ('ori-2', '00000000-0000-4000-8000-00000000b001', 'general', 'm_allowed_veto_applied', 'ori-m1',
              'failed_rate_limited', now(), 1)$$,
    '23514',
    'new row for relation "routing_outcomes" violates check constraint "outcome_requires_inference_when_model_chosen"',
    'a dispatched terminal outcome with NULL inference_id is refused'
);

-- What the constraint lets through: nothing dispatched, so nothing to link.
SELECT lives_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, chosen_model_slug,
                                            outcome_status, completed_at)
      VALUES ('ori-3', '00000000-0000-4000-8000-00000000b001', 'general', 'failed_pre_dispatch', 'ori-m1',
              'failed_pre_dispatch', now())$$,
    'a pre-dispatch refusal names the chosen model without an inference'
);
SELECT lives_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule,
                                            outcome_status, completed_at)
      VALUES ('ori-4', '00000000-0000-4000-8000-00000000b001', 'general', 'no_candidate_clears_floor',
              'rejected', now())$$,
    'a rejected outcome (no model) has no inference'
);

-- A linked outcome cannot be unlinked.
SELECT lives_ok(
    $$INSERT INTO routing.routing_outcomes (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug,
                                            inference_id, attempts)
      VALUES (2000001, 'ori-5', '00000000-0000-4000-8000-00000000b001', 'general', 'cheapest_clearing_floor',
              'ori-m1', 2000101, 1);
      INSERT INTO routing.inferences (id, outcome_id, attempt_no, agent_id, model_slug, status)
      VALUES (2000101, 2000001, 1, '00000000-0000-4000-8000-00000000b001', 'ori-m1', 'routed')$$,
    'a dispatched outcome written together with its inference is accepted'
);
SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET inference_id = NULL WHERE id = 2000001$$,
    '23514',
    'new row for relation "routing_outcomes" violates check constraint "outcome_requires_inference_when_model_chosen"',
    'a linked dispatched outcome cannot lose its inference_id'
);

-- Through the write path, the constraint is never the thing that fires.
SELECT is(
    (SELECT outcome_status FROM routing.insert_decision('ori-6', '00000000-0000-4000-8000-00000000b001', 'general', 100, 100)),
    NULL,
    'insert_decision dispatches under the constraint (the pair is written atomically)'
);
SELECT is_empty(
    $$SELECT id FROM routing.routing_outcomes
       WHERE NOT (chosen_model_slug IS NULL OR decision_rule = 'failed_pre_dispatch' OR inference_id IS NOT NULL)$$,
    'no row violates the predicate'
);

SELECT * FROM finish();
ROLLBACK;
