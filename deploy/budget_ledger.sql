-- Deploy routing_ledger:budget_ledger to pg
-- requires: ledger_tables
-- requires: integrity@v0.1.0
-- requires: argument_checks
--
-- The daily cap in constant time. v0.1 summed the agent's outcomes of the day on every
-- decision of a capped agent (O(requests today), serialised on the agent's row). Here a
-- running total per agent and budget day, routing.budget_spend, holds what the ledger
-- would sum: for every outcome of that agent created that day with a projected cost,
-- its settled cost_actual_usd, else its projected cost while in flight, else 0
-- (routing._outcome_spend, the one definition of "what an outcome spends").
--
-- - Reserve: insert_decision calls routing._reserve_budget, one conditional UPDATE ...
--   WHERE spent_usd + projected <= cap RETURNING on the (agent, day) row. Concurrent
--   decisions of one capped agent queue on that row for the rest of their (short)
--   transaction and each re-checks the cap against the committed total, so together
--   they cannot overspend. The row is created on the agent's first capped decision of
--   the day from the ledger itself (routing._derived_spend, the v0.1 sum, once a day).
-- - Settle: an AFTER UPDATE / DELETE trigger on routing_outcomes moves the row by the
--   change in the outcome's spend, in the same transaction as the write, whoever
--   writes it: complete_decision, fail_inference's give-up, the reaper, repair and its
--   rollback. No call site can forget it, and the write path's own functions need no
--   settlement code. The trigger's WHEN clause lets every other update (failover's
--   re-link, heartbeats, the judge) through without calling anything.
-- - The day: the outcome's created_at in routing.settings.spend_day_time_zone, read at
--   reservation and at settlement, so a request reserved on day D settles against day D
--   even when it completes after midnight. (Changing the time zone moves the day
--   boundaries; the drift metric then shows the rows of the day it changed.)
-- - A row exists only for an agent that was capped at some decision that day; it then
--   tracks every outcome of that agent and day (insert_decision adds the projected cost
--   of an uncapped decision too: an UPDATE that finds no row otherwise), so removing or
--   setting a cap mid-day keeps it exact.
-- - Drift: routing.check_budget_drift(p_as_of) re-derives the rows of p_as_of's budget
--   day from the ledger (index-only, routing_outcomes_agent_day), counts those that
--   differ, and records the count in routing.budget_drift_checks. One snapshot sees both,
--   since each write moves both in one transaction. Exact means reading the day: ~0.14 us
--   per outcome of the day of every capped agent (70 ms at 500 k), too dear for every
--   metrics scrape, so integrity_report's violation budget_spend_drift
--   (routing._budget_drift) reads a check of that day made in the last 5 minutes, and
--   re-derives the day itself only when there is none: the maintenance schedule (pg_cron,
--   or the supervised `routing-ledger reap --every` loop) runs the check every minute, and
--   a schedule that stopped makes the report exact again rather than stale.
-- Lock order: insert_decision takes the budget row before it inserts anything; the
-- other writers take it last, after their attempt and outcome (the write path's order),
-- and wait for nothing once they hold it; a statement settling many outcomes (the
-- reaper) first locks their budget rows in (agent, day) order (routing._lock_budget_rows).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.budget_spend (
    agent_id  uuid    NOT NULL REFERENCES routing.agents (id) ON DELETE CASCADE,
    spend_day date    NOT NULL,
    -- No CHECK: a settlement must never fail the write it accompanies; a wrong total
    -- is the drift metric's to report.
    spent_usd numeric NOT NULL,
    PRIMARY KEY (agent_id, spend_day)
) WITH (fillfactor = 50);
COMMENT ON TABLE routing.budget_spend IS
    'Running daily spend per agent and budget day (routing.settings.spend_day_time_zone): settled costs plus the projected cost of requests in flight, as routing_outcomes would sum them. Reserved by insert_decision, settled by a trigger on routing_outcomes in the same transaction as each write; integrity_report''s budget_spend_drift re-derives it.';

-- What one outcome counts against its agent's day.
CREATE OR REPLACE FUNCTION routing._outcome_spend(
    p_projected_cost_usd numeric, p_cost_actual_usd numeric, p_outcome_status text
) RETURNS numeric
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_projected_cost_usd IS NULL THEN 0
                ELSE coalesce(p_cost_actual_usd,
                              CASE WHEN p_outcome_status IS NULL THEN p_projected_cost_usd END, 0) END
$$;

-- The budget day of an instant. PL/pgSQL here and below: the plans are cached per
-- session (a SQL function that cannot be inlined is planned on every call).
CREATE OR REPLACE FUNCTION routing._spend_day(p_at timestamptz)
RETURNS date
LANGUAGE plpgsql
STABLE PARALLEL SAFE
-- No SET clause (it runs on every settlement); every name is qualified.
AS $$
BEGIN
    RETURN (SELECT (p_at AT TIME ZONE s.spend_day_time_zone)::date FROM routing.settings s);
END
$$;

-- The ledger's own sum for an agent and day, index-only on routing_outcomes_agent_day.
CREATE OR REPLACE FUNCTION routing._derived_spend(p_agent_id uuid, p_day date)
RETURNS numeric
LANGUAGE plpgsql
STABLE PARALLEL SAFE
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
-- A sum over a big day passes jit_above_cost; compiling it costs more than the sum.
SET jit = off
AS $$
BEGIN
    RETURN (
    SELECT coalesce(sum(routing._outcome_spend(o.projected_cost_usd, o.cost_actual_usd, o.outcome_status)), 0)
      FROM routing.settings s, routing.routing_outcomes o
     WHERE o.agent_id = p_agent_id
       AND o.created_at >= (p_day::timestamp AT TIME ZONE s.spend_day_time_zone)
       AND o.created_at <  ((p_day + 1)::timestamp AT TIME ZONE s.spend_day_time_zone)
       AND o.projected_cost_usd IS NOT NULL);
END
$$;

-- Reserve p_projected_usd of the agent's day at p_as_of if it fits under p_cap_usd.
-- Returns NULL when reserved, else the spend that leaves no room (for the refusal).
CREATE OR REPLACE FUNCTION routing._reserve_budget(
    p_agent_id uuid, p_cap_usd numeric, p_projected_usd numeric, p_as_of timestamptz
) RETURNS numeric
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_day   date := routing._spend_day(p_as_of);
    v_spent numeric;
BEGIN
    FOR v_try IN 1..2 LOOP
        UPDATE routing.budget_spend b
           SET spent_usd = b.spent_usd + p_projected_usd
         WHERE b.agent_id = p_agent_id AND b.spend_day = v_day
           AND b.spent_usd + p_projected_usd <= p_cap_usd;
        IF FOUND THEN
            RETURN NULL;
        END IF;
        -- Over the cap, or the agent's first capped decision of the day.
        SELECT b.spent_usd INTO v_spent
          FROM routing.budget_spend b WHERE b.agent_id = p_agent_id AND b.spend_day = v_day;
        IF FOUND THEN
            RETURN v_spent;
        END IF;
        INSERT INTO routing.budget_spend (agent_id, spend_day, spent_usd)
        VALUES (p_agent_id, v_day, routing._derived_spend(p_agent_id, v_day))
        ON CONFLICT (agent_id, spend_day) DO NOTHING;
    END LOOP;
    RAISE EXCEPTION '_reserve_budget: no budget row for agent % on %', p_agent_id, v_day
        USING ERRCODE = 'internal_error';
END
$$;

-- Move the agent's day of p_created_at by p_delta_usd, if that day has a row.
CREATE OR REPLACE FUNCTION routing._settle_budget(
    p_agent_id uuid, p_created_at timestamptz, p_delta_usd numeric
) RETURNS void
LANGUAGE plpgsql
-- No SET clause (it runs on every settlement); every name is qualified.
AS $$
BEGIN
    -- Most agents have no cap and so no row: the probe (an index lookup) costs a tenth of
    -- the UPDATE that would find nothing, on every decision and every settlement.
    IF p_delta_usd <> 0 AND EXISTS (SELECT FROM routing.budget_spend b WHERE b.agent_id = p_agent_id) THEN
        UPDATE routing.budget_spend b
           SET spent_usd = b.spent_usd + p_delta_usd
         WHERE b.agent_id = p_agent_id AND b.spend_day = routing._spend_day(p_created_at);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION routing._settle_budget_on_outcome()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
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

DROP TRIGGER IF EXISTS settle_budget ON routing.routing_outcomes;
CREATE TRIGGER settle_budget
    AFTER UPDATE ON routing.routing_outcomes
    FOR EACH ROW
    WHEN ((OLD.projected_cost_usd, OLD.cost_actual_usd, OLD.outcome_status IS NULL, OLD.agent_id, OLD.created_at)
          IS DISTINCT FROM
          (NEW.projected_cost_usd, NEW.cost_actual_usd, NEW.outcome_status IS NULL, NEW.agent_id, NEW.created_at))
    EXECUTE FUNCTION routing._settle_budget_on_outcome();

DROP TRIGGER IF EXISTS settle_budget_delete ON routing.routing_outcomes;
CREATE TRIGGER settle_budget_delete
    AFTER DELETE ON routing.routing_outcomes
    FOR EACH ROW
    WHEN (OLD.projected_cost_usd IS NOT NULL)
    EXECUTE FUNCTION routing._settle_budget_on_outcome();

-- Locks, in (agent, day) order, the budget rows the given outcomes settle on. A
-- statement that settles many outcomes at once (a reaper batch) calls it first, once it
-- holds the outcomes, so that two such statements take the rows in one order and cannot
-- deadlock on them (their triggers would otherwise lock them in row order).
CREATE OR REPLACE FUNCTION routing._lock_budget_rows(p_outcome_ids bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    PERFORM FROM routing.budget_spend b
     WHERE (b.agent_id, b.spend_day) IN (
               SELECT o.agent_id, routing._spend_day(o.created_at)
                 FROM routing.routing_outcomes o
                WHERE o.id = ANY (p_outcome_ids) AND o.projected_cost_usd IS NOT NULL)
     ORDER BY b.agent_id, b.spend_day
       FOR UPDATE;
END
$$;

-- The latest exact check of each budget day.
CREATE TABLE IF NOT EXISTS routing.budget_drift_checks (
    spend_day  date        PRIMARY KEY,
    drifted    bigint      NOT NULL CHECK (drifted >= 0),
    checked_at timestamptz NOT NULL
);
COMMENT ON TABLE routing.budget_drift_checks IS
    'The latest routing.check_budget_drift of each budget day: how many agents'' running spend (routing.budget_spend) differed from the ledger''s own sum, and when it was checked. integrity_report''s budget_spend_drift reads a check at most 5 minutes old.';

-- Rows of p_as_of's budget day that differ from the ledger's own sum, counted now.
CREATE OR REPLACE FUNCTION routing._derive_budget_drift(p_as_of timestamptz)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
SET jit = off
AS $$
BEGIN
    RETURN (SELECT count(*)
              FROM routing.budget_spend b
             WHERE b.spend_day = routing._spend_day(p_as_of)
               AND b.spent_usd <> routing._derived_spend(b.agent_id, b.spend_day));
END
$$;

-- What integrity_report reports: the day's check if it is at most 5 minutes old (at
-- p_as_of), else the count re-derived now.
CREATE OR REPLACE FUNCTION routing._budget_drift(p_as_of timestamptz)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_drifted bigint;
BEGIN
    SELECT c.drifted INTO v_drifted
      FROM routing.budget_drift_checks c
     WHERE c.spend_day = routing._spend_day(p_as_of)
       AND c.checked_at BETWEEN p_as_of - interval '5 minutes' AND p_as_of + interval '5 minutes';
    RETURN coalesce(v_drifted, routing._derive_budget_drift(p_as_of));
END
$$;

CREATE OR REPLACE FUNCTION routing.check_budget_drift(p_as_of timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, routing, pg_temp
AS $$
DECLARE
    v_drifted bigint;
BEGIN
    PERFORM routing._require_timestamp('check_budget_drift', 'p_as_of', p_as_of);
    v_drifted := routing._derive_budget_drift(p_as_of);
    INSERT INTO routing.budget_drift_checks AS c (spend_day, drifted, checked_at)
    VALUES (routing._spend_day(p_as_of), v_drifted, p_as_of)
    ON CONFLICT (spend_day) DO UPDATE SET drifted = excluded.drifted, checked_at = excluded.checked_at;
    RETURN v_drifted;
END
$$;
COMMENT ON FUNCTION routing.check_budget_drift(timestamptz) IS
    'Re-derives every running daily spend (routing.budget_spend) of p_as_of''s budget day from the ledger, returns how many differ, and records the count for integrity_report''s budget_spend_drift (which uses a check at most 5 minutes old, and re-derives the day itself otherwise). Scheduled every minute with the reaper. Reads the day''s outcomes of every capped agent (index-only). 22023 on p_as_of outside 1970..9999.';

INSERT INTO routing.integrity_metrics (metric, ordinal, kind, description) VALUES
    ('budget_spend_drift', 16, 'violation',
     'Agents whose running daily spend (routing.budget_spend, the daily cap''s total) for p_as_of''s budget day differs from the sum the ledger gives (settled costs plus in-flight projections), as of the day''s routing.check_budget_drift if one ran in the last 5 minutes (the maintenance schedule runs it every minute), else counted now. Something wrote routing_outcomes around the write path, or the spend time zone changed that day.')
ON CONFLICT (metric) DO UPDATE
   SET ordinal = excluded.ordinal, kind = excluded.kind, description = excluded.description;

REVOKE ALL ON routing.budget_spend, routing.budget_drift_checks FROM PUBLIC;
GRANT SELECT ON routing.budget_spend, routing.budget_drift_checks TO routing_readonly;
REVOKE ALL ON FUNCTION routing._outcome_spend(numeric, numeric, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._spend_day(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._derived_spend(uuid, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._reserve_budget(uuid, numeric, numeric, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._settle_budget(uuid, timestamptz, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._settle_budget_on_outcome() FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._lock_budget_rows(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._derive_budget_drift(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing._budget_drift(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION routing.check_budget_drift(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION routing.check_budget_drift(timestamptz) TO routing_ops;

COMMIT;
