-- Deploy routing_ledger:endpoints to pg
-- requires: catalog
--
-- Which API a model serves: routing.models.endpoint, of the domain routing.endpoint
-- ('chat', 'embeddings'), the one definition of that vocabulary (task_endpoints gives
-- routing.task_floors the same column). The router's first gate drops a model whose
-- endpoint is not the task's (wrong_endpoint). Every existing model serves chat.
--
-- The column has a constant default: adding it rewrites nothing. One table per change,
-- so this transaction never holds one catalog table while waiting for another that a
-- live insert_decision holds.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

DO $$
BEGIN
    IF to_regtype('routing.endpoint') IS NULL THEN
        CREATE DOMAIN routing.endpoint AS text
            CONSTRAINT endpoint_known CHECK (VALUE IN ('chat', 'embeddings'));
    END IF;
END
$$;
COMMENT ON DOMAIN routing.endpoint IS
    'The provider API a model serves and a task needs: chat (chat completions) or embeddings.';

ALTER TABLE routing.models
    ADD COLUMN IF NOT EXISTS endpoint routing.endpoint NOT NULL DEFAULT 'chat';
COMMENT ON COLUMN routing.models.endpoint IS
    'The API the model serves: chat or embeddings. The router gives a model only tasks of its endpoint (drop reason wrong_endpoint).';

COMMIT;
