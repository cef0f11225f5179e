-- Revert routing_ledger:argument_checks from pg

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION routing._require_member(text, text, text, text[], boolean);
DROP FUNCTION routing._require_timestamp(text, text, timestamptz, timestamptz, timestamptz, boolean);
DROP FUNCTION routing._require_interval(text, text, interval, interval, interval, boolean);
DROP FUNCTION routing._require_numeric(text, text, numeric, numeric, numeric, boolean);
DROP FUNCTION routing._require_int(text, text, bigint, bigint, bigint, boolean);
DROP FUNCTION routing._require_text(text, text, text, int, boolean);
DROP FUNCTION routing._require_not_null(text, text, anyelement);

COMMIT;
