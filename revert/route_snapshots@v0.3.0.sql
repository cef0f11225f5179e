-- Revert routing_ledger:route_snapshots from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing.explain_outcome(bigint);
DROP FUNCTION routing._route_candidates(jsonb);
DROP FUNCTION routing._full_explanation(jsonb);
DROP FUNCTION routing._expand_snapshot_list(jsonb, int, int);
DROP FUNCTION routing._route_explanation(numeric, text, int, int, timestamptz);
DROP FUNCTION routing._projected_cost(int, int, numeric, numeric);
DROP TABLE routing.route_snapshots;

COMMIT;
