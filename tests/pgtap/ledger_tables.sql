-- pgTAP for the ledger_tables change: routing_outcomes and inferences, the deferrable
-- link between them, and the state invariants (constraints, plus the guard triggers for
-- the transitions a constraint cannot see).
--
-- Rows are written directly here, as the table owner, to prove the tables themselves
-- refuse impossible states; applications never write them (see write_path.sql for the
-- grants). Explicit ids far above anything the sequences hand out keep the fixture
-- readable.
BEGIN;
SELECT plan(39);

-- Fixture: one agent, two enrolled models.
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-00000000a000', 'ledger-test');
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('lt-m1', 'p1', 'model-1', 1, 2, 0.9, true),
       ('lt-m2', 'p2', 'model-2', 2, 3, 0.9, true);

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'routing_outcomes', 'routing.routing_outcomes exists');
SELECT has_table('routing', 'inferences', 'routing.inferences exists');

SELECT results_eq(
    $$SELECT c.column_name::text COLLATE "default", c.data_type::text COLLATE "default"
        FROM information_schema.columns c
       WHERE c.table_schema = 'routing' AND c.table_name = 'routing_outcomes'
         AND c.column_name IN ('id', 'request_id', 'agent_id', 'tenant_id', 'task_type',
                               'decision_rule', 'chosen_model_slug', 'min_quality',
                               'projected_cost_usd', 'explanation', 'inference_id',
                               'outcome_status', 'cost_actual_usd', 'observed_latency_ms',
                               'attempts', 'judge_status', 'judge_score', 'judge_rationale',
                               'judge_model', 'judge_labeled_at', 'created_at', 'completed_at')
       ORDER BY c.column_name$$,
    $$VALUES ('agent_id', 'uuid'), ('attempts', 'integer'), ('chosen_model_slug', 'text'),
             ('completed_at', 'timestamp with time zone'), ('cost_actual_usd', 'numeric'),
             ('created_at', 'timestamp with time zone'), ('decision_rule', 'text'),
             ('explanation', 'jsonb'), ('id', 'bigint'), ('inference_id', 'bigint'),
             ('judge_labeled_at', 'timestamp with time zone'), ('judge_model', 'text'),
             ('judge_rationale', 'text'), ('judge_score', 'numeric'), ('judge_status', 'text'),
             ('min_quality', 'numeric'), ('observed_latency_ms', 'integer'),
             ('outcome_status', 'text'), ('projected_cost_usd', 'numeric'),
             ('request_id', 'text'), ('task_type', 'text'), ('tenant_id', 'uuid')$$,
    'routing_outcomes has the 22 contract columns with their types'
);
SELECT results_eq(
    $$SELECT c.column_name::text COLLATE "default", c.data_type::text COLLATE "default"
        FROM information_schema.columns c
       WHERE c.table_schema = 'routing' AND c.table_name = 'inferences'
         AND c.column_name IN ('id', 'outcome_id', 'attempt_no', 'agent_id', 'model_slug',
                               'status', 'error_code', 'error_message', 'http_status',
                               'retry_after_ms', 'not_before', 'request_payload',
                               'response_payload', 'input_tokens', 'output_tokens', 'cost_usd',
                               'latency_ms', 'created_at', 'completed_at')
       ORDER BY c.column_name$$,
    $$VALUES ('agent_id', 'uuid'), ('attempt_no', 'integer'),
             ('completed_at', 'timestamp with time zone'), ('cost_usd', 'numeric'),
             ('created_at', 'timestamp with time zone'), ('error_code', 'text'),
             ('error_message', 'text'), ('http_status', 'integer'), ('id', 'bigint'),
             ('input_tokens', 'integer'), ('latency_ms', 'integer'), ('model_slug', 'text'),
             ('not_before', 'timestamp with time zone'), ('outcome_id', 'bigint'),
             ('output_tokens', 'integer'), ('request_payload', 'jsonb'),
             ('response_payload', 'jsonb'), ('retry_after_ms', 'integer'), ('status', 'text')$$,
    'inferences has the 19 contract columns with their types'
);
SELECT col_is_pk('routing', 'routing_outcomes', 'id', 'routing_outcomes: id is the primary key');
SELECT col_is_pk('routing', 'inferences', 'id', 'inferences: id is the primary key');

-- "Columns beyond these have defaults, so history from an older write path can be loaded
-- with the named columns alone."
SELECT is_empty(
    $$SELECT c.table_name || '.' || c.column_name
        FROM information_schema.columns c
       WHERE c.table_schema = 'routing'
         AND c.table_name IN ('routing_outcomes', 'inferences')
         AND c.is_nullable = 'NO' AND c.column_default IS NULL AND c.is_identity = 'NO'
         AND (c.table_name, c.column_name) NOT IN (
             SELECT 'routing_outcomes', unnest(ARRAY['id', 'request_id', 'agent_id', 'tenant_id',
                 'task_type', 'decision_rule', 'chosen_model_slug', 'min_quality',
                 'projected_cost_usd', 'explanation', 'inference_id', 'outcome_status',
                 'cost_actual_usd', 'observed_latency_ms', 'attempts', 'judge_status',
                 'judge_score', 'judge_rationale', 'judge_model', 'judge_labeled_at',
                 'created_at', 'completed_at'])
             UNION ALL
             SELECT 'inferences', unnest(ARRAY['id', 'outcome_id', 'attempt_no', 'agent_id',
                 'model_slug', 'status', 'error_code', 'error_message', 'http_status',
                 'retry_after_ms', 'not_before', 'request_payload', 'response_payload',
                 'input_tokens', 'output_tokens', 'cost_usd', 'latency_ms', 'created_at',
                 'completed_at']))$$,
    'every non-contract column of the ledger is nullable or has a default'
);
SELECT col_is_null('routing', 'inferences', 'outcome_id',
    'inferences.outcome_id is nullable (history imported from an older write path)');

-- The two links. outcome -> inference must be DEFERRABLE INITIALLY DEFERRED: the outcome
-- is written already naming its first attempt, which is inserted by the next statement.
SELECT fk_ok('routing', 'routing_outcomes', 'inference_id', 'routing', 'inferences', 'id',
    'routing_outcomes.inference_id references inferences.id');
SELECT fk_ok('routing', 'inferences', 'outcome_id', 'routing', 'routing_outcomes', 'id',
    'inferences.outcome_id references routing_outcomes.id');
SELECT results_eq(
    $$SELECT c.condeferrable, c.condeferred
        FROM pg_catalog.pg_constraint c
       WHERE c.contype = 'f' AND c.conrelid = 'routing.routing_outcomes'::regclass
         AND c.confrelid = 'routing.inferences'::regclass$$,
    $$VALUES (true, true)$$,
    'the outcome -> inference foreign key is DEFERRABLE INITIALLY DEFERRED (and the only one)'
);

------------------------------------------------------------- the atomic two-row write

-- What insert_decision does: the outcome names an attempt that does not exist yet...
SELECT lives_ok(
    $$INSERT INTO routing.routing_outcomes
             (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug,
              inference_id, attempts)
      VALUES (1000001, 'lt-req-1', '00000000-0000-4000-8000-00000000a001', 'general',
              'cheapest_clearing_floor', 'lt-m1', 1000101, 1)$$,
    'a dispatched outcome can be written naming its first attempt before that attempt exists'
);
-- ...and the attempt follows in the same transaction.
SELECT lives_ok(
    $$INSERT INTO routing.inferences (id, outcome_id, attempt_no, agent_id, model_slug, status)
      VALUES (1000101, 1000001, 1, '00000000-0000-4000-8000-00000000a001', 'lt-m1', 'routed')$$,
    'its first attempt is written by the next statement'
);
-- Checking the deferred constraint now is what COMMIT would do.
SELECT lives_ok(
    $$SET CONSTRAINTS routing.routing_outcomes_inference_id_fkey IMMEDIATE$$,
    'the pair satisfies the deferred foreign key (as at COMMIT)'
);
SET CONSTRAINTS ALL DEFERRED;
SELECT throws_ok(
    $q$DO $x$
       BEGIN
           INSERT INTO routing.routing_outcomes
                  (id, request_id, agent_id, task_type, decision_rule, chosen_model_slug,
                   inference_id, attempts)
           VALUES (1000002, 'lt-req-dangling', '00000000-0000-4000-8000-00000000a001', 'general',
                   'cheapest_clearing_floor', 'lt-m1', 1999999, 1);
           SET CONSTRAINTS ALL IMMEDIATE;
       END
       $x$$q$,
    '23503', NULL,
    'an outcome naming an attempt that never appears fails the foreign key by COMMIT'
);

------------------------------------------------------------ inference state invariants

-- Standalone attempts (outcome_id NULL, as legacy history) isolate each CHECK.
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, completed_at)
      VALUES ('00000000-0000-4000-8000-00000000a001', 'lt-m1', 'routed', now())$$,
    '23514', NULL,
    'a routed attempt cannot have completed_at'
);
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, completed_at)
      VALUES ('00000000-0000-4000-8000-00000000a001', 'lt-m1', 'succeeded', NULL)$$,
    '23514', NULL,
    'a succeeded attempt must have completed_at'
);
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, error_message, completed_at)
      VALUES ('00000000-0000-4000-8000-00000000a001', 'lt-m1', 'failed', '503 from provider', now())$$,
    '23514', NULL,
    'a failed attempt must have an error_code'
);
SELECT throws_ok(
    $$INSERT INTO routing.inferences (agent_id, model_slug, status, error_code, completed_at)
      VALUES ('00000000-0000-4000-8000-00000000a001', 'lt-m1', 'failed', 'server_error', now())$$,
    '23514', NULL,
    'a failed attempt must have an error_message'
);
SELECT lives_ok(
    $$INSERT INTO routing.inferences (id, agent_id, model_slug, status, error_code, error_message, completed_at)
      VALUES (1000190, '00000000-0000-4000-8000-00000000a001', 'lt-m1', 'failed',
              'server_error', '503 from provider', now())$$,
    'a failed attempt with code, message and completed_at is accepted (the control for the three above)'
);
SELECT throws_ok(
    $$INSERT INTO routing.inferences (outcome_id, attempt_no, agent_id, model_slug, status)
      VALUES (1000001, 2, '00000000-0000-4000-8000-00000000a001', 'lt-m2', 'routed')$$,
    '23505', NULL,
    'an outcome has at most one routed attempt'
);

-- Transitions: routed -> succeeded | failed, never back. A CHECK sees one row version, so
-- these are the guard trigger's: each UPDATE below names a complete target state that
-- every CHECK accepts on its own, so only the transition itself can be refused.
SELECT lives_ok(
    $$UPDATE routing.inferences
         SET status = 'succeeded', completed_at = now(), cost_usd = 0.001,
             input_tokens = 10, output_tokens = 10
       WHERE id = 1000101$$,
    'routed -> succeeded is allowed'
);
SELECT throws_ok(
    $$UPDATE routing.inferences SET status = 'routed', completed_at = NULL, cost_usd = NULL
       WHERE id = 1000101$$,
    '23514', NULL,
    'succeeded -> routed is refused'
);
SELECT throws_ok(
    $$UPDATE routing.inferences
         SET status = 'failed', error_code = 'server_error', error_message = 'late 503',
             completed_at = now()
       WHERE id = 1000101$$,
    '23514', NULL,
    'succeeded -> failed is refused'
);
SELECT throws_ok(
    $$UPDATE routing.inferences SET status = 'routed', completed_at = NULL,
                                   error_code = NULL, error_message = NULL
       WHERE id = 1000190$$,
    '23514', NULL,
    'failed -> routed is refused'
);
SELECT throws_ok(
    $$UPDATE routing.inferences SET status = 'succeeded', error_code = NULL, error_message = NULL,
                                   completed_at = now()
       WHERE id = 1000190$$,
    '23514', NULL,
    'failed -> succeeded is refused'
);

-------------------------------------------------------------- outcome state invariants

SELECT lives_ok(
    $$UPDATE routing.routing_outcomes
         SET outcome_status = 'succeeded', completed_at = now(), cost_actual_usd = 0.001
       WHERE id = 1000001$$,
    'in flight -> succeeded is allowed'
);
SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET outcome_status = NULL, completed_at = NULL,
                                          cost_actual_usd = NULL
       WHERE id = 1000001$$,
    '23514', NULL,
    'a terminal outcome cannot go back in flight'
);
SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET outcome_status = 'failed_provider', completed_at = now()
       WHERE id = 1000001$$,
    '23514', NULL,
    'a terminal outcome cannot change to another terminal state'
);
SELECT throws_ok(
    $$UPDATE routing.routing_outcomes SET inference_id = 1000190 WHERE id = 1000001$$,
    '23514', NULL,
    'a terminal outcome stays linked to its final attempt (no re-pointing)'
);
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status)
      VALUES ('lt-req-2', '00000000-0000-4000-8000-00000000a001', 'general',
              'no_candidate_enrolled', 'rejected')$$,
    '23514', NULL,
    'a terminal outcome must have completed_at'
);
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule)
      VALUES ('lt-req-3', '00000000-0000-4000-8000-00000000a001', 'general', 'no_candidate_enrolled')$$,
    '23514', NULL,
    'only a dispatched decision can be in flight'
);
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule,
                                            chosen_model_slug, outcome_status, completed_at)
      VALUES ('lt-req-4', '00000000-0000-4000-8000-00000000a001', 'general',
              'no_candidate_clears_floor', 'lt-m1', 'rejected', now())$$,
    '23514', NULL,
    'a rejected outcome names no model'
);
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule,
                                            outcome_status, completed_at)
      VALUES ('lt-req-1', '00000000-0000-4000-8000-00000000a001', 'general',
              'no_candidate_enrolled', 'rejected', now())$$,
    '23505', NULL,
    'request_id is unique per agent'
);
SELECT lives_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule,
                                            outcome_status, completed_at)
      VALUES ('lt-req-5', '00000000-0000-4000-8000-00000000a001', 'general',
              'no_candidate_enrolled', 'rejected', now())$$,
    'a rejected outcome without model, inference or attempts is accepted'
);

------------------------------------------------- why the link is a deferred foreign key

-- The old write path needed "no dispatched outcome without inference" to hold only at
-- the end of its two-phase write, i.e. a deferred CHECK. PostgreSQL checks a CHECK per
-- row as the statement writes it and refuses DEFERRABLE on it, which is why the old
-- constraint had to carry an `outcome_status IS NULL` escape (and let orphans through).
-- Only foreign keys (and unique/exclusion constraints) can be deferred: hence the
-- DEFERRABLE foreign key above plus a plain CHECK that holds from the first statement.
SELECT throws_ok(
    $$ALTER TABLE routing.routing_outcomes
          ADD CONSTRAINT lt_deferred_check CHECK (inference_id IS NOT NULL)
          DEFERRABLE INITIALLY DEFERRED$$,
    '0A000', 'CHECK constraints cannot be marked DEFERRABLE',
    'PostgreSQL refuses a DEFERRABLE CHECK (0A000)'
);

-- Privileges: the ledger is private (the functions are the interface).
SELECT is(
    (SELECT count(*)::int
       FROM pg_catalog.pg_class c, aclexplode(c.relacl) a
      WHERE c.oid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
        AND a.grantee = 0),
    0,
    'PUBLIC has no privilege on the ledger tables'
);
SELECT table_privs_are('routing', 'routing_outcomes', 'routing_readonly', ARRAY['SELECT'],
    'routing_readonly may only SELECT routing_outcomes');
SELECT table_privs_are('routing', 'inferences', 'routing_readonly', ARRAY['SELECT'],
    'routing_readonly may only SELECT inferences');

SELECT * FROM finish();
ROLLBACK;
