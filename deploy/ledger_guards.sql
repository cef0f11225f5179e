-- Deploy routing_ledger:ledger_guards to pg
-- requires: ledger_tables
-- requires: budget_ledger
--
-- The row triggers every write-path transition fires, at the cost of their tests alone.
--
-- - routing._guard_inference_transition and routing._guard_outcome_transition (BEFORE
--   UPDATE on the two ledger tables) refuse what a CHECK cannot see: a terminal attempt or
--   outcome that changes, a decision that changes, a finished request re-pointed to
--   another attempt (23514). routing._settle_budget_on_outcome (AFTER UPDATE/DELETE of an
--   outcome, when its spend changes) keeps routing.budget_spend equal to the ledger's sum.
--   Their rules are unchanged (deploy/ledger_tables.sql, deploy/budget_ledger.sql).
-- - They run without a SET clause: a function's SET search_path saves, sets and restores
--   the setting (and the lookup path) on each call, which was a third of these triggers'
--   cost. Every name in them is qualified; the write path calls them under its own pinned
--   search_path. They are not SECURITY DEFINER: they run as the writer.
-- - The guards test routing.restoring_repair_run (set only by routing.rollback_repair)
--   before calling routing._restoring_repair_run, so the usual transition makes no call.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE OR REPLACE FUNCTION routing._guard_inference_transition()
RETURNS trigger
LANGUAGE plpgsql
-- No SET clause: it runs on every transition; every name is qualified.
AS $$
BEGIN
    -- A repair rollback's restore names its run in a setting first: the plain test ends
    -- every other write here, before any call.
    IF coalesce(pg_catalog.current_setting('routing.restoring_repair_run', true), '') <> ''
       AND routing._restoring_repair_run() THEN
        RETURN NEW;
    END IF;
    IF OLD.status <> 'routed'
       AND (NEW.status, NEW.error_code, NEW.completed_at, NEW.cost_usd, NEW.model_slug, NEW.attempt_no)
           IS DISTINCT FROM
           (OLD.status, OLD.error_code, OLD.completed_at, OLD.cost_usd, OLD.model_slug, OLD.attempt_no)
    THEN
        RAISE EXCEPTION 'inference % is already % and cannot change', OLD.id, OLD.status
            USING ERRCODE = 'check_violation',
                  HINT = 'routed -> succeeded | failed, never back; write through the routing.* functions';
    END IF;
    IF NEW.agent_id IS DISTINCT FROM OLD.agent_id OR NEW.model_slug IS DISTINCT FROM OLD.model_slug THEN
        RAISE EXCEPTION 'inference %: agent_id and model_slug never change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION routing._guard_outcome_transition()
RETURNS trigger
LANGUAGE plpgsql
-- No SET clause: it runs on every transition; every name is qualified.
AS $$
BEGIN
    -- A repair rollback's restore names its run in a setting first: the plain test ends
    -- every other write here, before any call.
    IF coalesce(pg_catalog.current_setting('routing.restoring_repair_run', true), '') <> ''
       AND routing._restoring_repair_run() THEN
        RETURN NEW;
    END IF;
    IF OLD.outcome_status IS NOT NULL
       AND (NEW.outcome_status, NEW.completed_at, NEW.cost_actual_usd)
           IS DISTINCT FROM (OLD.outcome_status, OLD.completed_at, OLD.cost_actual_usd)
    THEN
        RAISE EXCEPTION 'outcome % is already % and cannot change', OLD.id, OLD.outcome_status
            USING ERRCODE = 'check_violation',
                  HINT = 'an outcome reaches exactly one terminal state; write through the routing.* functions';
    END IF;
    -- A finished request keeps the attempt it ended on. (Linking history that had none,
    -- and a repair rollback unlinking it again, are not re-pointing.)
    IF OLD.outcome_status IS NOT NULL
       AND OLD.inference_id IS NOT NULL AND NEW.inference_id IS NOT NULL
       AND NEW.inference_id <> OLD.inference_id
    THEN
        RAISE EXCEPTION 'outcome % is already % and stays linked to its final attempt %',
                        OLD.id, OLD.outcome_status, OLD.inference_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.request_id, NEW.agent_id, NEW.decision_rule, NEW.chosen_model_slug)
       IS DISTINCT FROM (OLD.request_id, OLD.agent_id, OLD.decision_rule, OLD.chosen_model_slug)
    THEN
        RAISE EXCEPTION 'outcome %: the decision (request_id, agent_id, decision_rule, chosen_model_slug) never changes', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION routing._settle_budget_on_outcome()
RETURNS trigger
LANGUAGE plpgsql
-- No SET clause: it runs on every transition; every name is qualified.
AS $$
BEGIN
    -- Most agents have no cap and so no budget row: then there is nothing to settle.
    IF NOT EXISTS (SELECT FROM routing.budget_spend b
                    WHERE b.agent_id = OLD.agent_id
                       OR (TG_OP = 'UPDATE' AND b.agent_id = NEW.agent_id)) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM routing._settle_budget(OLD.agent_id, OLD.created_at,
            -routing._outcome_spend(OLD.projected_cost_usd, OLD.cost_actual_usd, OLD.outcome_status));
        RETURN OLD;
    END IF;
    IF NEW.agent_id IS DISTINCT FROM OLD.agent_id OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        PERFORM routing._settle_budget(OLD.agent_id, OLD.created_at,
            -routing._outcome_spend(OLD.projected_cost_usd, OLD.cost_actual_usd, OLD.outcome_status));
        PERFORM routing._settle_budget(NEW.agent_id, NEW.created_at,
            routing._outcome_spend(NEW.projected_cost_usd, NEW.cost_actual_usd, NEW.outcome_status));
    ELSE
        PERFORM routing._settle_budget(NEW.agent_id, NEW.created_at,
            routing._outcome_spend(NEW.projected_cost_usd, NEW.cost_actual_usd, NEW.outcome_status)
            - routing._outcome_spend(OLD.projected_cost_usd, OLD.cost_actual_usd, OLD.outcome_status));
    END IF;
    RETURN NEW;
END
$$;

COMMIT;
