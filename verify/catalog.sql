-- Verify routing_ledger:catalog on pg

BEGIN;

SELECT slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd,
       q_prior, m_allowed, expected_latency_ms, agentic_index, enabled
  FROM routing.models WHERE false;
SELECT task_type, min_quality FROM routing.task_floors WHERE false;
SELECT id, tenant_id, name, status, per_call_cap_usd, daily_cap_usd FROM routing.agents WHERE false;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM routing.task_floors
             WHERE task_type IN ('reasoning', 'code', 'tool_use', 'general', 'chat', 'extraction', 'embed')) = 7,
           'the seeded task floors are missing';
    ASSERT (SELECT count(*) FROM routing.settings) = 1, 'routing.settings must hold exactly one row';
END
$$;

ROLLBACK;
