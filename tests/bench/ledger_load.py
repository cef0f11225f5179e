"""Bulk-load ledger history as the owner, fast: generate_series INSERTs, indexes rebuilt after.

Rows go in through the tables (as history from an older write path would), never through
the functions, so a million outcomes take about a minute rather than an hour. Secondary
indexes and the foreign keys are dropped for the load and rebuilt from their own
definitions afterwards (a sorted build instead of millions of random inserts); the CHECK
``outcome_requires_inference_when_model_chosen`` comes back NOT VALID, as on a database that
still holds the older path's orphans. The database ends the same as if every row had been
inserted with its indexes in place, then vacuumed and analysed.

Each loaded outcome has a *kind*, which decides its columns:

  ok      succeeded and judged (labeled)      queue   succeeded, waiting for the judge
  fail    failed_provider (server_error)      rej     rejected, no inference
  pre     failed_pre_dispatch, no inference   flight  in flight (routed attempt)
  orphan  an older path's orphan: outcome with no inference, its attempt unowned, stuck routed
  stuck   in flight, attempt routed for hours

A *shape* is the SQL that builds the temp table ``k(id, kind, agent_id, slug, created_at)``;
``%(off)s`` is the first free id minus one and ``%(n)s`` the row count.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

# 50 agents for history; none capped.
HISTORY_AGENTS = """
INSERT INTO routing.agents (id, tenant_id, name)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
       '00000000-0000-4000-8000-00000000ffff', 'history ' || g
  FROM generate_series(1, 50) g
ON CONFLICT (id) DO NOTHING;
"""
_AGENT_OF = "('00000000-0000-4000-8000-' || lpad((g %% 50 + 1)::text, 12, '0'))::uuid"
_SLUG_OF = "(ARRAY['b-small', 'b-mini', 'b-large'])[g %% 3 + 1]"

# The v0.1 integrity bench's ledger: production a year after the rollout, one request every
# 30 s: 88% succeeded (90% of them judged), 6% failed, 3% rejected, 1% refused before
# dispatch, 0.1% orphans of the older path, 0.05% stuck, the last 200 in flight.
PROPORTIONAL = f"""
CREATE TEMP TABLE k AS
SELECT %(off)s + g AS id,
       CASE WHEN g > %(n)s - 200 THEN 'flight'
            WHEN g %% 10000 < 8800 THEN CASE WHEN g %% 10 = 0 THEN 'queue' ELSE 'ok' END
            WHEN g %% 10000 < 9400 THEN 'fail'
            WHEN g %% 10000 < 9700 THEN 'rej'
            WHEN g %% 10000 < 9800 THEN 'pre'
            WHEN g %% 10000 < 9810 THEN 'orphan'
            WHEN g %% 10000 < 9815 THEN 'stuck'
            ELSE 'ok' END AS kind,
       {_AGENT_OF} AS agent_id, {_SLUG_OF} AS slug,
       now() - make_interval(secs => (%(n)s - g) * 30.0) AS created_at
  FROM generate_series(1, %(n)s) g;
"""

# Clean history over the past year (everything terminal, every success judged), followed by
# a fixed live set: LIVE_ORPHANS orphans and LIVE_STUCK stuck attempts two to three hours
# old, LIVE_QUEUE outcomes waiting for the judge from the last six hours, LIVE_FLIGHT in
# flight. Loading it with n = 0 and with n = 1 M gives two ledgers with the same anomalies
# and the same judge queue, differing only in history: what "flat" is measured against.
LIVE_ORPHANS, LIVE_STUCK, LIVE_QUEUE, LIVE_FLIGHT = 100, 50, 18_000, 200
LIVE = LIVE_ORPHANS + LIVE_STUCK + LIVE_QUEUE + LIVE_FLIGHT
HISTORY_THEN_LIVE = f"""
CREATE TEMP TABLE k AS
SELECT %(off)s + g AS id,
       CASE WHEN g <= %(n)s - {LIVE} THEN
                CASE WHEN g %% 100 < 90 THEN 'ok' WHEN g %% 100 < 96 THEN 'fail'
                     WHEN g %% 100 < 99 THEN 'rej' ELSE 'pre' END
            WHEN g <= %(n)s - {LIVE} + {LIVE_ORPHANS} THEN 'orphan'
            WHEN g <= %(n)s - {LIVE} + {LIVE_ORPHANS + LIVE_STUCK} THEN 'stuck'
            WHEN g <= %(n)s - {LIVE_FLIGHT} THEN 'queue'
            ELSE 'flight' END AS kind,
       {_AGENT_OF} AS agent_id, {_SLUG_OF} AS slug,
       CASE WHEN g <= %(n)s - {LIVE} THEN
                now() - interval '7 hours'
                      - make_interval(secs => (%(n)s - {LIVE} - g) * 31536000.0
                                              / greatest(%(n)s - {LIVE}, 1))
            WHEN g <= %(n)s - {LIVE} + {LIVE_ORPHANS + LIVE_STUCK}
                THEN now() - interval '3 hours' + make_interval(secs => g %% 3600)
            WHEN g <= %(n)s - {LIVE_FLIGHT}
                THEN now() - interval '6 hours' + make_interval(secs => (g %% 20000) * 1.0)
            ELSE now() - interval '30 seconds' END AS created_at
  FROM generate_series(1, %(n)s) g;
"""

# n judged successes of one agent (%(agent)s), spread over today in the budget's time zone
# up to a minute ago: the history a capped agent's daily sum has to read.
TODAY = """
CREATE TEMP TABLE k AS
SELECT %(off)s + g AS id, 'ok'::text AS kind, %(agent)s::uuid AS agent_id,
       'b-mini'::text AS slug,
       d.day_start + (now() - interval '1 minute' - d.day_start) * (g::float8 / %(n)s)
           AS created_at
  FROM generate_series(1, %(n)s) g,
       (SELECT date_trunc('day', now() AT TIME ZONE s.spend_day_time_zone)
               AT TIME ZONE s.spend_day_time_zone AS day_start
          FROM routing.settings s) d;
"""

FILL = """
INSERT INTO routing.routing_outcomes (id, request_id, agent_id, tenant_id, task_type,
       decision_rule, chosen_model_slug, min_quality, projected_cost_usd, explanation,
       inference_id, outcome_status, cost_actual_usd, observed_latency_ms, attempts,
       judge_status, judge_score, judge_model, judge_labeled_at, created_at, completed_at)
SELECT k.id, 'load-' || k.id, k.agent_id, a.tenant_id,
       (ARRAY['chat', 'code', 'general'])[k.id %% 3 + 1],
       CASE k.kind WHEN 'rej' THEN 'no_candidate_clears_floor' WHEN 'pre' THEN 'failed_pre_dispatch'
                   ELSE 'cheapest_clearing_floor' END,
       CASE WHEN k.kind = 'rej' THEN NULL ELSE k.slug END,
       0.68, CASE WHEN k.kind = 'rej' THEN NULL ELSE 0.0012 END,
       '{"candidates": [], "dropped": []}',
       CASE WHEN k.kind IN ('rej', 'pre', 'orphan') THEN NULL ELSE k.id END,
       CASE k.kind WHEN 'ok' THEN 'succeeded' WHEN 'queue' THEN 'succeeded'
                   WHEN 'fail' THEN 'failed_provider' WHEN 'rej' THEN 'rejected'
                   WHEN 'pre' THEN 'failed_pre_dispatch' END,
       CASE WHEN k.kind IN ('ok', 'queue') THEN 0.0005 END,
       CASE WHEN k.kind IN ('ok', 'queue') THEN 900 END,
       CASE WHEN k.kind IN ('rej', 'pre', 'orphan') THEN 0 ELSE 1 END,
       CASE k.kind WHEN 'ok' THEN 'labeled' WHEN 'queue' THEN 'unlabeled' END,
       CASE WHEN k.kind = 'ok' THEN 1 + k.id %% 5 END,
       CASE WHEN k.kind = 'ok' THEN 'judge' END,
       CASE WHEN k.kind = 'ok' THEN k.created_at + interval '1 hour' END,
       k.created_at,
       CASE WHEN k.kind IN ('flight', 'orphan', 'stuck') THEN NULL
            ELSE k.created_at + interval '2 seconds' END
  FROM k JOIN routing.agents a ON a.id = k.agent_id;

INSERT INTO routing.inferences (id, outcome_id, attempt_no, agent_id, model_slug, status,
       error_code, error_message, request_payload, response_payload, input_tokens,
       output_tokens, cost_usd, latency_ms, created_at, completed_at)
SELECT k.id, CASE WHEN k.kind = 'orphan' THEN NULL ELSE k.id END,
       1, k.agent_id, k.slug,
       CASE WHEN k.kind IN ('ok', 'queue') THEN 'succeeded' WHEN k.kind = 'fail' THEN 'failed'
            ELSE 'routed' END,
       CASE WHEN k.kind = 'fail' THEN 'server_error' END,
       CASE WHEN k.kind = 'fail' THEN 'HTTP 503 Service Unavailable' END,
       '{"messages": [{"role": "user", "content": "hello"}]}',
       CASE WHEN k.kind IN ('ok', 'queue') THEN '{"content": "hi"}'::jsonb END,
       100, CASE WHEN k.kind IN ('ok', 'queue') THEN 20 END,
       CASE WHEN k.kind IN ('ok', 'queue') THEN 0.0005 END,
       CASE WHEN k.kind IN ('ok', 'queue') THEN 900 END,
       k.created_at + interval '1 second',
       CASE WHEN k.kind IN ('ok', 'queue', 'fail') THEN k.created_at + interval '2 seconds' END
  FROM k WHERE k.kind NOT IN ('rej', 'pre');

SELECT setval('routing.routing_outcomes_id_seq',
              greatest((SELECT max(id) FROM routing.routing_outcomes), 1)),
       setval('routing.inferences_id_seq', greatest((SELECT max(id) FROM routing.inferences), 1));
DROP TABLE k;
"""


def _index_defs(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Secondary (non-constraint) indexes of the ledger tables: (name, definition)."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            """
            SELECT i.relname, pg_get_indexdef(i.oid)
              FROM pg_index x
              JOIN pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid IN ('routing.routing_outcomes'::regclass,
                    'routing.inferences'::regclass)
               AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = x.indexrelid)
            """
        ).fetchall()
    ]


def _literal(conn: psycopg.Connection[Any], value: Any) -> str:
    return sql.Literal(value).as_string(conn)


def load(conn: psycopg.Connection[Any], n: int, shape: str = PROPORTIONAL, **params: Any) -> float:
    """Load ``n`` outcomes of ``shape`` (an autocommit connection, as the owner); seconds taken."""
    started = time.perf_counter()
    if n <= 0:
        return 0.0
    conn.execute(HISTORY_AGENTS)
    offset = conn.execute(
        "SELECT greatest((SELECT coalesce(max(id), 0) FROM routing.routing_outcomes),"
        " (SELECT coalesce(max(id), 0) FROM routing.inferences))"
    ).fetchone()
    assert offset is not None
    values = {"n": str(int(n)), "off": str(int(offset[0]))}
    values.update({k: _literal(conn, v) for k, v in params.items()})
    script = shape + FILL
    for key, value in values.items():
        script = script.replace(f"%({key})s", value)
    script = script.replace("%%", "%")
    constraints = conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
          FROM pg_constraint c
         WHERE c.conrelid IN ('routing.routing_outcomes'::regclass, 'routing.inferences'::regclass)
           AND (c.contype = 'f' OR c.conname = 'outcome_requires_inference_when_model_chosen')
        """
    ).fetchall()
    indexes = _index_defs(conn)
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for table, name, _ in constraints:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX routing.{name}")
        # Several statements: no server-side parameters (everything above is an int or a literal).
        conn.execute(script.encode())
        for _, definition in indexes:
            conn.execute(definition.encode())
        # Foreign keys first (validated by one join each), the CHECK last, NOT VALID.
        for table, name, definition in sorted(constraints, key=lambda c: c[2].startswith("CHECK")):
            if definition.startswith("CHECK"):
                definition = definition.removesuffix(" NOT VALID") + " NOT VALID"
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}".encode())
    conn.execute("VACUUM (ANALYZE) routing.routing_outcomes")
    conn.execute("VACUUM (ANALYZE) routing.inferences")
    return time.perf_counter() - started
