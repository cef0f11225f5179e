-- Demo catalog and agents for `routing-ledger demo` (owner-side setup, run with psql or
-- by the CLI). Safe to re-run: every row is upserted.
--
-- The catalog goes through the audited admin functions (routing.upsert_model, upsert_agent,
-- set_task_floor), as an operator in routing_admin would write it; routing.catalog_changes
-- keeps who changed what. The retry policy and settings are owner-only tables.
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

-- upsert_model(slug, provider, provider_model, price in, price out (USD per Mtok), q_prior,
--              m_allowed, endpoint, enabled, expected_latency_ms, agentic_index)
SELECT routing.upsert_model(slug, provider, provider_model, price_in, price_out, q_prior,
                            m_allowed, endpoint, enabled, latency_ms, agentic_index)
  FROM (VALUES
    -- Cheapest; clears chat and extraction (floors 0.58).
    ('demo-mistral-tiny',   'mistral',  'open-mistral-tiny',      0.10,  0.30, 0.60, true,  'chat', true,  300, 0.20),
    -- Clears code and tool_use (0.78) too: the cheapest for them.
    ('demo-openai-mini',    'openai',   'gpt-4o-mini',            0.15,  0.60, 0.80, true,  'chat', true,  400, 0.55),
    ('demo-mistral-small',  'mistral',  'mistral-small-latest',   0.20,  0.60, 0.74, true,  'chat', true,  350, 0.45),
    ('demo-together-llama', 'together', 'llama-3.1-70b-instruct', 0.60,  0.60, 0.82, true,  'chat', true,  600, 0.60),
    ('demo-mistral-medium', 'mistral',  'mistral-medium-latest',  0.40,  2.00, 0.85, true,  'chat', true,  700, 0.70),
    -- Claude models, served by the fault server's Anthropic Messages API (demo prices,
    -- not Anthropic's list prices): the cheapest for code and tool_use, and for reasoning.
    ('demo-claude-haiku',   'anthropic', 'claude-haiku-4-5',      0.12,  0.50, 0.79, true,  'chat', true,  350, 0.65),
    ('demo-claude-sonnet',  'anthropic', 'claude-sonnet-4-5',     1.50,  5.00, 0.91, true,  'chat', true,  700, 0.90),
    -- Clear reasoning (0.88).
    ('demo-mistral-large',  'mistral',  'mistral-large-latest',   2.00,  6.00, 0.90, true,  'chat', true,  900, 0.80),
    ('demo-openai-4o',      'openai',   'gpt-4o',                 2.50, 10.00, 0.93, true,  'chat', true,  800, 0.85),
    -- Vetoed (m_allowed false): cheaper than the reasoning winner, so reasoning decisions
    -- are m_allowed_veto_applied.
    ('demo-together-vetoed','together', 'unvetted-reasoner',      0.50,  1.50, 0.89, false, 'chat', true,  500, 0.50),
    -- Disabled: the cheapest of all, and never chosen.
    ('demo-mistral-legacy', 'mistral',  'open-mistral-7b',        0.05,  0.05, 0.70, true,  'chat', false, 300, 0.10),
    -- Not enrolled: no price yet.
    ('demo-openai-preview', 'openai',   'gpt-preview',            NULL,  NULL, 0.95, true,  'chat', true, 1500, 0.90),
    -- Embeddings (floor 0.52), billed on input tokens only. The router's price gate wants
    -- both prices above 0 and an embedding has no output tokens, so the output price is
    -- nominal (the input price again).
    ('demo-together-embed', 'together', 'm2-bert-80M-8k-retrieval', 0.008, 0.008, 0.56, true, 'embeddings', true, 150, NULL),
    ('demo-openai-embed',   'openai',   'text-embedding-3-small', 0.02,  0.02, 0.64, true,  'embeddings', true, 120, NULL),
    ('demo-mistral-embed',  'mistral',  'mistral-embed',          0.10,  0.10, 0.72, true,  'embeddings', true, 130, NULL)
  ) AS m(slug, provider, provider_model, price_in, price_out, q_prior, m_allowed, endpoint,
         enabled, latency_ms, agentic_index);

-- Prompt-cache rates (USD per Mtok), as the providers bill cached input: OpenAI's cached
-- input at half its input rate, Mistral's at a tenth; Anthropic's cache reads at a tenth,
-- its 5-minute cache writes at 1.25x and 1-hour writes at 2x the input rate. A model
-- without a cache rate of its own bills cached tokens at its input rate. Only added when
-- the rate in force differs, so a re-run writes nothing.
SELECT routing.set_model_price(c.slug, c.token_class, c.rate)
  FROM (VALUES ('demo-openai-mini', 'cache_read', 0.075), ('demo-openai-4o', 'cache_read', 1.25),
               ('demo-mistral-tiny', 'cache_read', 0.01), ('demo-mistral-small', 'cache_read', 0.02),
               ('demo-mistral-medium', 'cache_read', 0.04), ('demo-mistral-large', 'cache_read', 0.20),
               ('demo-claude-haiku', 'cache_read', 0.012), ('demo-claude-haiku', 'cache_write', 0.15),
               ('demo-claude-haiku', 'cache_write_1h', 0.24),
               ('demo-claude-sonnet', 'cache_read', 0.15), ('demo-claude-sonnet', 'cache_write', 1.875),
               ('demo-claude-sonnet', 'cache_write_1h', 3.00)) AS c (slug, token_class, rate)
 WHERE (SELECT p.usd_per_mtok FROM routing.model_prices p
         WHERE p.model_slug = c.slug AND p.token_class = c.token_class AND p.min_input_tokens = 0
           AND p.effective_from <= now()
         ORDER BY p.effective_from DESC LIMIT 1) IS DISTINCT FROM c.rate;

-- A floor nothing in the catalog clears: those requests are rejected, never dispatched.
SELECT routing.set_task_floor('demo_formal_proof', 0.97);

-- upsert_agent(id, tenant_id, name, status, per_call_cap_usd, daily_cap_usd)
SELECT routing.upsert_agent(id::uuid, tenant_id::uuid, name, status, per_call_cap, daily_cap)
  FROM (VALUES
    -- The main gateway: no caps.
    ('00000000-0000-4000-8000-00000000d001', '00000000-0000-4000-8000-0000000000a1',
     'demo-gateway', 'active', NULL::numeric, NULL::numeric),
    -- A batch agent with a per-call cap: the most expensive models exceed it.
    ('00000000-0000-4000-8000-00000000d002', '00000000-0000-4000-8000-0000000000a1',
     'demo-batch', 'active', 0.002, NULL),
    -- A trial agent with a tiny daily cap: refused before dispatch once it is spent.
    ('00000000-0000-4000-8000-00000000d003', '00000000-0000-4000-8000-0000000000a2',
     'demo-trial', 'active', NULL, 0.0005),
    -- Suspended: every request is refused before dispatch.
    ('00000000-0000-4000-8000-00000000d004', '00000000-0000-4000-8000-0000000000a2',
     'demo-suspended', 'suspended', NULL, NULL)
  ) AS a(id, tenant_id, name, status, per_call_cap, daily_cap);

-- Fast retries for the demo: backoff of tens of milliseconds (a 429's Retry-After still
-- wins when it is longer), and a short cooldown after a 429 without Retry-After.
UPDATE routing.retry_policy SET base_backoff_ms = 40, max_backoff_ms = 400;
-- A short demo: learned quality takes over from q_prior after 20 judged samples, not 30.
UPDATE routing.settings SET rate_limit_cooldown_ms = 300, min_judged_samples = 20;

COMMIT;

-- Statistics for the freshly written catalog, as after any bulk load: without them the
-- planner takes the one-row settings table and the small catalog for hundreds of rows.
ANALYZE routing.models, routing.task_floors, routing.agents, routing.settings,
        routing.retry_policy, routing.model_cooldowns, routing.model_task_quality;
