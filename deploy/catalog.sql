-- Deploy routing_ledger:catalog to pg
-- requires: schema_roles
--
-- The routing catalog: models and their prices and priors, the per-task quality
-- floors, the agents that call the gateway with their caps, and the tunables of the
-- router and the write path (one row, so a DBA sees every knob in one place).

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE IF NOT EXISTS routing.models (
    slug                  text PRIMARY KEY CHECK (slug <> ''),
    provider              text NOT NULL CHECK (provider <> ''),
    provider_model        text NOT NULL CHECK (provider_model <> ''),
    -- NULL or <= 0: the model is not enrolled (it has no price the router can rank).
    price_in_per_mtok_usd  numeric,
    price_out_per_mtok_usd numeric,
    -- NULL: not enrolled (no quality prior to compare with a floor).
    q_prior               numeric CHECK (q_prior BETWEEN 0 AND 1),
    -- Only true admits; NULL is treated as a veto like false.
    m_allowed             boolean,
    expected_latency_ms   int CHECK (expected_latency_ms >= 0),
    agentic_index         numeric,
    enabled               boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE routing.models IS
    'Catalog of provider models the router may choose. Enrolled = both prices > 0 and q_prior set.';

CREATE TABLE IF NOT EXISTS routing.task_floors (
    task_type   text PRIMARY KEY CHECK (task_type <> ''),
    min_quality numeric NOT NULL CHECK (min_quality BETWEEN 0 AND 1)
);
COMMENT ON TABLE routing.task_floors IS
    'Minimum effective quality per task type; a task type not listed gets routing.settings.default_min_quality (0.5).';

INSERT INTO routing.task_floors (task_type, min_quality) VALUES
    ('reasoning',  0.88),
    ('code',       0.78),
    ('tool_use',   0.78),
    ('general',    0.68),
    ('chat',       0.58),
    ('extraction', 0.58),
    ('embed',      0.52)
ON CONFLICT (task_type) DO NOTHING;

CREATE TABLE IF NOT EXISTS routing.agents (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    name             text NOT NULL,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    per_call_cap_usd numeric CHECK (per_call_cap_usd >= 0),
    daily_cap_usd    numeric CHECK (daily_cap_usd >= 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE routing.agents IS
    'Callers of the gateway. NULL caps mean no cap; a suspended agent is refused before dispatch.';

CREATE TABLE IF NOT EXISTS routing.settings (
    singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    default_min_quality    numeric  NOT NULL DEFAULT 0.5  CHECK (default_min_quality BETWEEN 0 AND 1),
    max_attempts           int      NOT NULL DEFAULT 6    CHECK (max_attempts >= 1),
    rate_limit_cooldown_ms int      NOT NULL DEFAULT 5000 CHECK (rate_limit_cooldown_ms >= 0),
    min_judged_samples     int      NOT NULL DEFAULT 30   CHECK (min_judged_samples >= 1),
    judge_lease            interval NOT NULL DEFAULT '5 minutes' CHECK (judge_lease > '0'),
    spend_day_time_zone    text     NOT NULL DEFAULT 'UTC'
);
COMMENT ON TABLE routing.settings IS
    'Tunables, one row: default floor, attempt cap per request, default cooldown after a 429 without Retry-After, judged samples before learned quality replaces q_prior, judge claim lease, time zone of the daily spend cap.';
COMMENT ON COLUMN routing.settings.max_attempts IS
    'Cap on dispatch attempts of one request, retries and failovers included.';
COMMENT ON COLUMN routing.settings.rate_limit_cooldown_ms IS
    'Cooldown put on a model after a 429 that carried no Retry-After.';
COMMENT ON COLUMN routing.settings.min_judged_samples IS
    'Judged samples a (model, task type) needs before its learned quality replaces q_prior in the router.';

INSERT INTO routing.settings DEFAULT VALUES ON CONFLICT (singleton) DO NOTHING;

REVOKE ALL ON routing.models, routing.task_floors, routing.agents, routing.settings FROM PUBLIC;
GRANT SELECT ON routing.models, routing.task_floors, routing.agents, routing.settings TO routing_readonly;

COMMIT;
