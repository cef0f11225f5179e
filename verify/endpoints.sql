-- Verify routing_ledger:endpoints on pg

BEGIN;

SELECT endpoint FROM routing.models WHERE false;

DO $$
BEGIN
    ASSERT to_regtype('routing.endpoint') IS NOT NULL, 'the domain routing.endpoint is missing';
END
$$;

ROLLBACK;
