-- Deploy routing_ledger:inference_streaming to pg
-- requires: ledger_tables
--
-- What a streamed attempt needs the ledger to hold, and the vocabulary its endings add.
--
-- Columns of routing.inferences (all nullable or with a constant default: adding them
-- is a catalog change, no table rewrite):
--   streamed        the attempt was dispatched as a stream (inherited by its retries);
--   first_token_at  the attempt started forwarding output to its caller: from then on a
--                   failure gives up (routing.mark_first_token stamps it), and ttft_ms;
--   heartbeat_at    the last sign of life of a long stream (routing.heartbeat_inference),
--                   which the reaper counts age from, with the partial output_tokens;
--   usage_source    'provider' (the provider reported usage) or 'estimated' (the client
--                   counted).
-- The input figure of a partial answer is the attempt's input_tokens, which the write
-- path records at creation (the request's input estimate) and a completion replaces
-- with the provider's count.
--
-- The error_code vocabulary gains stream_interrupted and cancelled. The released layout
-- defines it as the CHECK inferences_error_code_check (and the same list on
-- routing.retry_policy, widened by retry_policy_stream_codes); it is widened under its
-- own name: dropped and re-added NOT VALID in one ALTER TABLE (one short ACCESS
-- EXCLUSIVE lock, no scan, no moment without a check); validate_inference_streaming
-- validates it later under SHARE UPDATE EXCLUSIVE, which does not block writes.
--
-- One ledger table per change: the write-path functions lock routing_outcomes,
-- inferences and the catalog in different orders, so a migration transaction that held
-- an ACCESS EXCLUSIVE lock on one while waiting for another could deadlock with live
-- traffic (and a request would be the victim). Holding one, it can only wait, bounded
-- by lock_timeout.
--
-- Which attempts are past due, given a cutoff: one definition, routing._routed_past_due,
-- for the reaper and the integrity report. It is an inlinable SQL function over
-- greatest(created_at, not_before), the expression of the existing partial index
-- inferences_routed_age, plus a filter on heartbeat_at, so the reaper stays on that index
-- and heartbeat_at is indexed nowhere: a heartbeat (every few seconds per live stream)
-- changes no indexed column and can be a HOT update.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

ALTER TABLE routing.inferences
    ADD COLUMN IF NOT EXISTS streamed       boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS first_token_at timestamptz,
    ADD COLUMN IF NOT EXISTS ttft_ms        int,
    ADD COLUMN IF NOT EXISTS heartbeat_at   timestamptz,
    ADD COLUMN IF NOT EXISTS usage_source   text;

COMMENT ON COLUMN routing.inferences.streamed IS
    'Dispatched as a stream; a retry or failover of this attempt inherits it.';
COMMENT ON COLUMN routing.inferences.first_token_at IS
    'When the attempt started forwarding output to its caller (routing.mark_first_token). From then on every failure gives up: failed_stream_interrupted, or cancelled.';
COMMENT ON COLUMN routing.inferences.ttft_ms IS
    'Time to first token reported by the client with mark_first_token.';
COMMENT ON COLUMN routing.inferences.heartbeat_at IS
    'Last heartbeat of a running stream (routing.heartbeat_inference). The reaper counts age from the latest of created_at, not_before and heartbeat_at.';
COMMENT ON COLUMN routing.inferences.usage_source IS
    'provider: the provider reported the token usage; estimated: the client counted. NULL: no usage known.';

-- One statement per table: drop and re-add under the same name, NOT VALID.
ALTER TABLE routing.inferences
    DROP CONSTRAINT IF EXISTS inferences_error_code_check,
    ADD CONSTRAINT inferences_error_code_check CHECK (error_code IN (
        'rate_limited', 'server_error', 'timeout', 'connection_error',
        'bad_request', 'auth', 'client_error', 'abandoned',
        'stream_interrupted', 'cancelled')) NOT VALID,
    DROP CONSTRAINT IF EXISTS inference_usage_source_known,
    ADD CONSTRAINT inference_usage_source_known
        CHECK (usage_source IN ('provider', 'estimated')) NOT VALID,
    DROP CONSTRAINT IF EXISTS inference_ttft_non_negative,
    ADD CONSTRAINT inference_ttft_non_negative CHECK (ttft_ms >= 0) NOT VALID;

-- True when a routed attempt is past due at p_cutoff: the latest of created_at,
-- not_before and heartbeat_at is before it. Written as the index expression
-- greatest(created_at, not_before) plus a heartbeat filter, so that, inlined into the
-- caller's query, the partial index inferences_routed_age answers it.
CREATE OR REPLACE FUNCTION routing._routed_past_due(
    p_created_at timestamptz, p_not_before timestamptz, p_heartbeat_at timestamptz, p_cutoff timestamptz
) RETURNS boolean
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
-- No SET clause and not SECURITY DEFINER: either would stop the planner from inlining it.
AS $$
    SELECT greatest(p_created_at, p_not_before) < p_cutoff
       AND (p_heartbeat_at IS NULL OR p_heartbeat_at < p_cutoff)
$$;
COMMENT ON FUNCTION routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz) IS
    'A routed attempt is past due at p_cutoff when the latest of created_at, not_before and heartbeat_at is before it. The one definition used by the reaper and the integrity report; inlined, it is answered by the index inferences_routed_age.';

REVOKE ALL ON FUNCTION routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz) FROM PUBLIC;
-- The view routing.stuck_inferences calls it, and a view's functions run with its reader's
-- EXECUTE right. It is a pure predicate over its arguments.
GRANT EXECUTE ON FUNCTION routing._routed_past_due(timestamptz, timestamptz, timestamptz, timestamptz) TO routing_readonly;

COMMIT;
