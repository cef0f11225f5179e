-- Revert routing_ledger:model_prices from pg
--
-- Back to catalog prices: the catalog columns still hold the tier-0 input and output
-- rates set last, and the router and the write path of the changes before this one
-- read them. The price history and its audit rows go with the table.

BEGIN;

SET LOCAL lock_timeout = '5s';

DROP FUNCTION IF EXISTS routing.set_model_price(text, text, numeric, timestamptz, int);
DROP FUNCTION IF EXISTS routing._usage_parts(text, jsonb, int, int);
DROP FUNCTION IF EXISTS routing._require_usage_within(text, int, int, int, int, int, int);
DROP FUNCTION IF EXISTS routing._attempt_cost(text, timestamptz, int, int, int, int, int);
DROP FUNCTION IF EXISTS routing._price_validity(timestamptz);
DROP FUNCTION IF EXISTS routing._catalog_rates(timestamptz, int);
DROP FUNCTION IF EXISTS routing._rates_in_force(text, timestamptz, int);
DROP FUNCTION IF EXISTS routing._rate_in_force(text, text, timestamptz, int);
DROP TRIGGER IF EXISTS sync_model_prices ON routing.models;
DROP FUNCTION IF EXISTS routing._sync_model_prices();
DROP TABLE IF EXISTS routing.model_prices;
DROP FUNCTION IF EXISTS routing._token_classes();

DELETE FROM routing.catalog_changes WHERE table_name = 'model_prices';
ALTER TABLE routing.catalog_changes
    DROP CONSTRAINT IF EXISTS catalog_changes_table_name_check,
    ADD CONSTRAINT catalog_changes_table_name_check CHECK (table_name IN ('models', 'agents', 'task_floors'));

-- route_snapshots' definition.
CREATE OR REPLACE FUNCTION routing._projected_cost(
    p_input_tokens int, p_max_tokens int, p_price_in numeric, p_price_out numeric
) RETURNS numeric
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(p_input_tokens * p_price_in / 1e6 + p_max_tokens * p_price_out / 1e6, 6)
$$;

COMMIT;
