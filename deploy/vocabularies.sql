-- Deploy routing_ledger:vocabularies to pg
-- requires: ledger_tables
-- requires: write_path
-- requires: validate_inference_streaming
-- requires: validate_outcome_requires_inference
-- requires: partitioned_ledger
--
-- Each word list of the ledger, and the test of an orphan, has one definition, here or in
-- write_path, and every CHECK, function and view that needs one calls it:
--   routing._client_error_codes()  the error codes a client reports (write_path's)
--   routing._error_codes()         those and the reaper's own 'abandoned'
--   routing._outcome_statuses()    an outcome's terminal statuses
--   routing._judge_verdicts()      what a judge records
--   routing._judge_statuses()      the queue's unlabeled and claimed, then the verdicts
--   routing._outcome_is_orphan()   a dispatched outcome that names no attempt
--
-- Each is IMMUTABLE, with no SET clause, not STRICT and not SECURITY DEFINER. The lists
-- are PL/pgSQL: a CHECK's expression is prepared again by every statement that writes the
-- table, and the planner folds an IMMUTABLE call to its constant there; a LANGUAGE sql
-- list would be inlined instead, its body parsed and analysed again on every INSERT and
-- UPDATE of the ledger (measured: +30 % on the write path's server time), whereas a
-- PL/pgSQL body is compiled once per session. The orphan test is LANGUAGE sql, inlined:
-- it becomes its three column tests before the planner matches partial indexes, so the
-- indexes routing_outcomes_orphans and routing_outcomes_orphans_judge, whose predicate
-- is that same test, still answer the queries that call it.
--
-- IMMUTABLE is a promise: PostgreSQL checks no row again when a function that a CHECK
-- calls is replaced. So a list may only grow by CREATE OR REPLACE (every row still
-- passes). Narrowing a list, or changing the orphan test, is a new change that also
-- drops and re-adds the CHECKs that use it NOT VALID and validates them.
--
-- This change re-points the judge-status CHECK of routing_outcomes and retry_policy's
-- two CHECKs. The outcome-status CHECK and the error-code CHECK of inferences belong to
-- the released changes outcome_stream_statuses and inference_streaming: their reworks,
-- next in the plan, re-point them (the verify script Sqitch runs is the rework's).
-- The CHECKs keep their released names and hold the same lists as at @v0.3.0, so every
-- row already passes. One CHECK keeps its literal text: outcome_requires_inference_when_
-- model_chosen, the negation of the orphan test, which the contract states word for word
-- and rollback_repair re-adds from its own text. Each table's are dropped and re-added
-- NOT VALID in one statement (a short ACCESS EXCLUSIVE lock, no scan);
-- validate_vocabularies validates them under SHARE UPDATE EXCLUSIVE.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing._error_codes()
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN routing._client_error_codes() || 'abandoned'::text;
END
$$;
COMMENT ON FUNCTION routing._error_codes() IS
    'Every error code an attempt can carry: routing._client_error_codes() and the reaper''s abandoned.';

CREATE OR REPLACE FUNCTION routing._outcome_statuses()
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN ARRAY['succeeded', 'failed_rate_limited', 'failed_provider', 'failed_timeout',
                  'failed_bad_request', 'failed_client', 'failed_abandoned',
                  'failed_pre_dispatch', 'rejected', 'failed_stream_interrupted', 'cancelled'];
END
$$;
COMMENT ON FUNCTION routing._outcome_statuses() IS
    'The terminal statuses of an outcome (routing_outcomes.outcome_status; NULL while in flight).';

CREATE OR REPLACE FUNCTION routing._judge_verdicts()
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN ARRAY['labeled', 'error', 'cannot_evaluate'];
END
$$;
COMMENT ON FUNCTION routing._judge_verdicts() IS
    'What routing.record_judgement records: labeled (with a score) or error / cannot_evaluate (without one). The Python judge worker mirrors it.';

CREATE OR REPLACE FUNCTION routing._judge_statuses()
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN ARRAY['unlabeled', 'claimed'] || routing._judge_verdicts();
END
$$;
COMMENT ON FUNCTION routing._judge_statuses() IS
    'routing_outcomes.judge_status: the queue''s unlabeled and claimed, then routing._judge_verdicts().';

-- decision_rule is NOT NULL, so the test is never NULL.
CREATE OR REPLACE FUNCTION routing._outcome_is_orphan(
    p_inference_id bigint, p_chosen_model_slug text, p_decision_rule text
) RETURNS boolean
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_inference_id IS NULL AND p_chosen_model_slug IS NOT NULL
       AND p_decision_rule <> 'failed_pre_dispatch'
$$;
COMMENT ON FUNCTION routing._outcome_is_orphan(bigint, text, text) IS
    'An outcome is an orphan when a model was dispatched (chosen, not failed_pre_dispatch) and it names no attempt: history of the older write path. Called with the outcome''s inference_id, chosen_model_slug and decision_rule; inlined, the partial indexes on it answer.';

ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT IF EXISTS routing_outcomes_judge_status_check,
    ADD CONSTRAINT routing_outcomes_judge_status_check
        CHECK (judge_status = ANY (routing._judge_statuses())) NOT VALID;

-- A give-up status ends a failed attempt: never success, nor a status decided before
-- any dispatch.
ALTER TABLE routing.retry_policy
    DROP CONSTRAINT IF EXISTS retry_policy_error_code_check,
    ADD CONSTRAINT retry_policy_error_code_check
        CHECK (error_code = ANY (routing._error_codes())) NOT VALID,
    DROP CONSTRAINT IF EXISTS retry_policy_give_up_status_check,
    ADD CONSTRAINT retry_policy_give_up_status_check
        CHECK (give_up_status = ANY (routing._outcome_statuses())
               AND give_up_status NOT IN ('succeeded', 'failed_pre_dispatch', 'rejected')) NOT VALID;

-- On a ledger already partitioned (routing.partition_ledger), the unpartitioned layout's
-- definitions are recorded for unpartition_ledger to put back: record this CHECK as it
-- now reads, or a back-out would bring the literal list back (retry_policy is not
-- partitioned).
UPDATE routing.ledger_layout_ddl d
   SET definition = pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(c.oid), ' NOT VALID$', '')
  FROM pg_catalog.pg_constraint c
 WHERE d.kind = 'constraint'
   AND c.conrelid = pg_catalog.to_regclass(d.table_name) AND c.conname = d.name
   AND d.name = 'routing_outcomes_judge_status_check';

REVOKE ALL ON FUNCTION routing._error_codes(), routing._outcome_statuses(), routing._judge_verdicts(),
                        routing._judge_statuses(), routing._outcome_is_orphan(bigint, text, text) FROM PUBLIC;
-- The roles that read the ledger tables or views over them (routing_readonly, and
-- routing_judge through routing.judge_queue) may call them, pure constants and a pure
-- predicate: the planner folds a CHECK's calls with the reader's EXECUTE right whenever it
-- considers the CHECK (on every partition of a partitioned ledger, for constraint
-- exclusion), a view's calls run with its reader's right (routing.orphan_outcomes), and a
-- function is inlined only for a role that may execute it. routing._client_error_codes()
-- too, which routing._error_codes() calls. Granted to the roles, not to PUBLIC, which
-- write_path revokes; routing_app and routing_ops only call SECURITY DEFINER functions.
GRANT EXECUTE ON FUNCTION routing._client_error_codes(), routing._error_codes(), routing._outcome_statuses(),
                          routing._judge_verdicts(), routing._judge_statuses(),
                          routing._outcome_is_orphan(bigint, text, text)
    TO routing_judge, routing_readonly;

COMMIT;
