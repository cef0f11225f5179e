-- Deploy routing_ledger:outcome_request_keys to pg
-- requires: ledger_tables
-- requires: write_path
--
-- Idempotency of insert_decision on a time-partitioned ledger (change partitioned_ledger,
-- docs/scaling.md). On a partitioned routing_outcomes a unique key must include the
-- partition key (created_at), so (agent_id, request_id) cannot be unique there. This
-- change adds what takes its place, used only once routing.partition_ledger has switched
-- the layout; the unpartitioned ledger keeps its released unique key and pays nothing:
--
--   routing.outcome_request_keys   one narrow row per request, (agent_id, request_id)
--       unique, naming its outcome (id, created_at). Not partitioned, so a request decided
--       at 23:59:59.999 and retried at 00:00:00.001 finds its outcome whichever partition
--       holds it, for as long as the outcome is retained (routing.purge_request_keys
--       deletes the keys of the partitions retention dropped). Empty while the ledger is
--       unpartitioned; the switch writes the keys of the history.
--   routing._claim_request_key()   the BEFORE INSERT trigger the switch puts on the
--       partitioned routing_outcomes: every outcome claims its key, whoever writes it. A
--       key already claimed is a unique violation (23505, as the released unique key
--       raises), except for a writer that declares, with the function SET clause
--       routing.request_key_conflict = 'skip', that a conflict is its race branch:
--       insert_decision, whose INSERT ... ON CONFLICT DO NOTHING then returns no row, and
--       which reads the winner's (the claim waited for the winner to commit).
--   routing._follow_outcome_created_at()   the BEFORE UPDATE OF outcome_id trigger the
--       switch puts on the partitioned inferences: repair re-linking history sets
--       outcome_id, and the attempt's partition key (inferences.outcome_created_at,
--       written by the write path) follows, which moves the row to its outcome's range.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.outcome_request_keys (
    agent_id           uuid NOT NULL,
    request_id         text NOT NULL,
    outcome_id         bigint NOT NULL,
    outcome_created_at timestamptz NOT NULL,
    CONSTRAINT outcome_request_keys_pkey PRIMARY KEY (agent_id, request_id),
    -- Outcome ids are unique across every partition: each outcome names its key row.
    CONSTRAINT outcome_request_keys_outcome_key UNIQUE (outcome_id),
    -- The target of the outcome's foreign key; created_at first, so retention finds the
    -- keys of a dropped range through it.
    CONSTRAINT outcome_request_keys_range_key
        UNIQUE (outcome_created_at, outcome_id, agent_id, request_id)
);
COMMENT ON TABLE routing.outcome_request_keys IS
    'Idempotency of insert_decision on a partitioned ledger: one row per (agent_id, request_id), naming its outcome (id, created_at), not partitioned, so a retry finds its outcome across partition boundaries. Written by the request-key trigger of the partitioned routing_outcomes; purged after retention. Empty on the unpartitioned layout, whose unique key (request_id, agent_id) does the same.';

REVOKE ALL ON routing.outcome_request_keys FROM PUBLIC;
GRANT SELECT ON routing.outcome_request_keys TO routing_readonly;

CREATE OR REPLACE FUNCTION routing._claim_request_key()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    INSERT INTO routing.outcome_request_keys AS k (agent_id, request_id, outcome_id, outcome_created_at)
    VALUES (NEW.agent_id, NEW.request_id, NEW.id, NEW.created_at)
    ON CONFLICT (agent_id, request_id) DO NOTHING;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    IF current_setting('routing.request_key_conflict', true) = 'skip' THEN
        RETURN NULL;  -- the caller's ON CONFLICT DO NOTHING: no row, its race branch
    END IF;
    RAISE EXCEPTION 'duplicate key value violates unique constraint "outcome_request_keys_pkey"'
        USING ERRCODE = 'unique_violation',
              DETAIL = format('Key (agent_id, request_id)=(%s, %s) already exists.', NEW.agent_id, NEW.request_id),
              HINT = 'one outcome per (agent_id, request_id); write through routing.insert_decision';
END
$$;
REVOKE ALL ON FUNCTION routing._claim_request_key() FROM PUBLIC;

CREATE OR REPLACE FUNCTION routing._follow_outcome_created_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, routing, pg_temp
AS $$
BEGIN
    IF NEW.outcome_id IS NOT NULL AND NEW.outcome_id IS DISTINCT FROM OLD.outcome_id THEN
        NEW.outcome_created_at := (SELECT o.created_at FROM routing.routing_outcomes o
                                    WHERE o.id = NEW.outcome_id);
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION routing._follow_outcome_created_at() FROM PUBLIC;

COMMIT;
