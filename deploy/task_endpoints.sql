-- Deploy routing_ledger:task_endpoints to pg
-- requires: endpoints
--
-- Which API a task needs: routing.task_floors.endpoint (domain routing.endpoint).
-- Seeded: embed needs embeddings, every other seeded task chat; a task type not listed
-- needs chat (the router's default). The seed is applied only when the column is first
-- added, so a re-run never undoes an operator's choice.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute
                    WHERE attrelid = 'routing.task_floors'::regclass
                      AND attname = 'endpoint' AND NOT attisdropped) THEN
        ALTER TABLE routing.task_floors
            ADD COLUMN endpoint routing.endpoint NOT NULL DEFAULT 'chat';
        UPDATE routing.task_floors SET endpoint = 'embeddings' WHERE task_type = 'embed';
    END IF;
END
$$;
COMMENT ON COLUMN routing.task_floors.endpoint IS
    'The API the task needs: embed needs embeddings, the other seeded tasks chat; a task type not listed needs chat.';

COMMIT;
