-- Demo catalog and agents for `routing-ledger demo` (owner-side setup, run with psql or
-- by the CLI). Safe to re-run: every row is upserted.
--
-- The models sit on three providers; the demo maps all three to one fault-injecting
-- server on loopback, so failover between them is real HTTP. Prices and priors are
-- spread so that each task type has several floor-clearing candidates to fail over to,
-- and one model of each kind the router must drop: vetoed, disabled, not enrolled, and
-- (for the capped agent) over its per-call budget. Three embeddings models serve the embed
-- task (and only it: the router's first gate keeps chat and embeddings apart).
--
-- It also makes the retry policy fast (tens of milliseconds of backoff, a short default
-- cooldown) so a burst of a few hundred calls finishes in seconds. That is a change to
-- the database's policy: run it on a scratch database, never on one that serves traffic.

BEGIN;

INSERT INTO routing.models AS m
       (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd,
        q_prior, m_allowed, expected_latency_ms, agentic_index, enabled, endpoint)
VALUES
    -- Cheapest; clears chat and extraction (floors 0.58).
    ('demo-mistral-tiny',   'mistral',  'open-mistral-tiny',     0.10,  0.30, 0.60, true,  300, 0.20, true, 'chat'),
    -- Clears code and tool_use (0.78) too: the cheapest for them.
    ('demo-openai-mini',    'openai',   'gpt-4o-mini',           0.15,  0.60, 0.80, true,  400, 0.55, true, 'chat'),
    ('demo-mistral-small',  'mistral',  'mistral-small-latest',  0.20,  0.60, 0.74, true,  350, 0.45, true, 'chat'),
    ('demo-together-llama', 'together', 'llama-3.1-70b-instruct', 0.60,  0.60, 0.82, true,  600, 0.60, true, 'chat'),
    ('demo-mistral-medium', 'mistral',  'mistral-medium-latest', 0.40,  2.00, 0.85, true,  700, 0.70, true, 'chat'),
    -- Clear reasoning (0.88).
    ('demo-mistral-large',  'mistral',  'mistral-large-latest',  2.00,  6.00, 0.90, true,  900, 0.80, true, 'chat'),
    ('demo-openai-4o',      'openai',   'gpt-4o',                2.50, 10.00, 0.93, true,  800, 0.85, true, 'chat'),
    -- Vetoed (m_allowed false): cheaper than the reasoning winner, so reasoning decisions
    -- are m_allowed_veto_applied.
    ('demo-together-vetoed','together', 'unvetted-reasoner',     0.50,  1.50, 0.89, false, 500, 0.50, true, 'chat'),
    -- Disabled: the cheapest of all, and never chosen.
    ('demo-mistral-legacy', 'mistral',  'open-mistral-7b',       0.05,  0.05, 0.70, true,  300, 0.10, false, 'chat'),
    -- Not enrolled: no price yet.
    ('demo-openai-preview', 'openai',   'gpt-preview',           NULL,  NULL, 0.95, true, 1500, 0.90, true, 'chat'),
    -- Embeddings (floor 0.52), billed on input only; the router's price gate wants both
    -- prices, and an embedding has no output tokens, so the output price is nominal.
    ('demo-together-embed', 'together', 'm2-bert-80M-8k-retrieval', 0.008, 0.008, 0.56, true, 150, NULL, true, 'embeddings'),
    ('demo-openai-embed',   'openai',   'text-embedding-3-small', 0.02,  0.02, 0.64, true,  120, NULL, true, 'embeddings'),
    ('demo-mistral-embed',  'mistral',  'mistral-embed',         0.10,  0.10, 0.72, true,  130, NULL, true, 'embeddings')
ON CONFLICT (slug) DO UPDATE
   SET provider = excluded.provider, provider_model = excluded.provider_model,
       price_in_per_mtok_usd = excluded.price_in_per_mtok_usd,
       price_out_per_mtok_usd = excluded.price_out_per_mtok_usd,
       q_prior = excluded.q_prior, m_allowed = excluded.m_allowed,
       expected_latency_ms = excluded.expected_latency_ms,
       agentic_index = excluded.agentic_index, enabled = excluded.enabled,
       endpoint = excluded.endpoint;

-- A floor nothing in the catalog clears: those requests are rejected, never dispatched.
INSERT INTO routing.task_floors (task_type, min_quality)
VALUES ('demo_formal_proof', 0.97)
ON CONFLICT (task_type) DO UPDATE SET min_quality = excluded.min_quality;

INSERT INTO routing.agents AS a (id, tenant_id, name, status, per_call_cap_usd, daily_cap_usd)
VALUES
    -- The main gateway: no caps.
    ('00000000-0000-4000-8000-00000000d001', '00000000-0000-4000-8000-0000000000a1',
     'demo-gateway', 'active', NULL, NULL),
    -- A batch agent with a per-call cap: the most expensive models exceed it.
    ('00000000-0000-4000-8000-00000000d002', '00000000-0000-4000-8000-0000000000a1',
     'demo-batch', 'active', 0.002, NULL),
    -- A trial agent with a tiny daily cap: refused before dispatch once it is spent.
    ('00000000-0000-4000-8000-00000000d003', '00000000-0000-4000-8000-0000000000a2',
     'demo-trial', 'active', NULL, 0.0005),
    -- Suspended: every request is refused before dispatch.
    ('00000000-0000-4000-8000-00000000d004', '00000000-0000-4000-8000-0000000000a2',
     'demo-suspended', 'suspended', NULL, NULL)
ON CONFLICT (id) DO UPDATE
   SET tenant_id = excluded.tenant_id, name = excluded.name, status = excluded.status,
       per_call_cap_usd = excluded.per_call_cap_usd, daily_cap_usd = excluded.daily_cap_usd;

-- Fast retries for the demo: backoff of tens of milliseconds (a 429's Retry-After still
-- wins when it is longer), and a short cooldown after a 429 without Retry-After.
UPDATE routing.retry_policy SET base_backoff_ms = 40, max_backoff_ms = 400;
-- A short demo: learned quality takes over from q_prior after 20 judged samples, not 30.
UPDATE routing.settings SET rate_limit_cooldown_ms = 300, min_judged_samples = 20;

COMMIT;

-- Statistics for the freshly written catalog, as after any bulk load. Without them the
-- planner takes the one-row settings table and the small catalog for hundreds of rows, the
-- router's estimated cost passes jit_above_cost, and every decision pays a JIT compile.
ANALYZE routing.models, routing.task_floors, routing.agents, routing.settings,
        routing.retry_policy, routing.model_cooldowns, routing.model_task_quality;
