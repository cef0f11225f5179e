"""The write paths the benchmarks compare, each as "one request on one connection".

  package  routing.insert_decision + routing.complete_decision: two round trips, each one
           statement and one transaction (autocommit), routing and checks included — whatever
           the deployed plan makes of them.
  floor    the same row writes as two plain autocommit statements, as the owner, with no
           routing and no checks: one data-modifying CTE inserting the outcome and its
           inference, one updating both. Same round trips, same transactions (so the same
           commits, and the same fsyncs), same bytes (the outcome stores the document the
           router returns for this request, the inference the same payloads). The ratio
           package / floor is what the functions cost on top of the writes themselves.
  bare_tx  the same row writes as the v0.1 write_path_bench measured them: two explicit
           transactions of BEGIN, two statements, COMMIT (six round trips).
  legacy   the write path routing-ledger replaces, the six statements issue 12 names, each
           its own round trip and transaction: SELECT the catalog (the old gateway read the
           models it routes over before writing; the routing it then did in the application
           is left out, as is any budget query); INSERT outcome with inference_id NULL;
           INSERT inference; UPDATE outcome SET inference_id (the back-fill); at completion
           UPDATE inference; UPDATE outcome. It runs on a database whose constraint has the
           old in-flight escape (LEGACY_CONSTRAINT).

A :class:`Workload` fixes the request (agent, task, tokens, payloads) and what the router
decides for it, so every path writes the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
CAPPED_AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000b3")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000b2")

PAYLOAD: dict[str, Any] = {
    "messages": [{"role": "user", "content": "benchmark request"}],
    "max_tokens": 64,
}
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}

# A small catalog (the v0.1 bench's): one vetoed model, four that clear most floors. The
# capped agent's daily cap is far above anything a benchmark spends, so it is never refused
# and pays only for the check.
CATALOG = f"""
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('b-small', 'mistral', 'mistral-small', 0.2, 0.6, 0.75, true),
       ('b-mini',  'openai',  'gpt-4o-mini',   0.15, 0.6, 0.80, true),
       ('b-large', 'mistral', 'mistral-large', 2.0, 6.0, 0.90, true),
       ('b-4o',    'openai',  'gpt-4o',        2.5, 10.0, 0.93, true),
       ('b-veto',  'other',   'unvetted',      0.1, 0.1, 0.95, false);
INSERT INTO routing.agents (id, tenant_id, name) VALUES ('{AGENT}', '{TENANT}', 'bench');
INSERT INTO routing.agents (id, tenant_id, name, daily_cap_usd)
VALUES ('{CAPPED_AGENT}', '{TENANT}', 'bench capped', 1000000000);
"""


def catalog_of(n: int) -> str:
    """A catalog of ``n`` enabled, enrolled chat models (no vetoes), spread in price and
    quality so that some fall below the ``general`` floor and the rest are ranked."""
    return f"""
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed, expected_latency_ms)
SELECT 'm-' || lpad(g::text, 5, '0'), 'bench', 'model-' || g,
       round(0.05 + (g * 7919 % 1000) / 100.0, 4), round(0.15 + (g * 104729 % 1000) / 40.0, 4),
       round(0.55 + (g * 31 % 45) / 100.0, 2), true, 200 + g % 900
  FROM generate_series(1, {int(n)}) g;
INSERT INTO routing.agents (id, tenant_id, name) VALUES ('{AGENT}', '{TENANT}', 'bench');
"""


# The constraint as the old write path had it: an in-flight outcome may lack its inference.
LEGACY_CONSTRAINT = """
ALTER TABLE routing.routing_outcomes
    DROP CONSTRAINT IF EXISTS outcome_requires_inference_when_model_chosen;
ALTER TABLE routing.routing_outcomes
    ADD CONSTRAINT outcome_requires_inference_when_model_chosen
    CHECK (chosen_model_slug IS NULL OR outcome_status IS NULL OR inference_id IS NOT NULL);
"""

# The client's own statements: one per function, every argument cast. Only the v0.1
# arguments are passed, so the same text runs against any later plan (new ones have DEFAULTs).
INSERT_DECISION = (
    "SELECT * FROM routing.insert_decision("
    "%s::text, %s::uuid, %s::text, %s::int, %s::int, %s::jsonb)"
)
COMPLETE_DECISION = (
    "SELECT * FROM routing.complete_decision(%s::bigint, %s::jsonb, %s::int, %s::int, %s::int)"
)
CHOOSE_ROUTE = "SELECT routing.choose_route(%s::uuid, %s::text, %s::int, %s::int)"

_OUTCOME_COLUMNS = """request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
        min_quality, projected_cost_usd, explanation"""
FLOOR_INSERT = f"""
WITH o AS (
    INSERT INTO routing.routing_outcomes ({_OUTCOME_COLUMNS}, inference_id, attempts)
    VALUES (%(rid)s, %(agent)s, %(tenant)s, %(task)s, %(rule)s, %(slug)s, %(minq)s,
            %(projected)s, %(explanation)s, nextval('routing.inferences_id_seq'), 1)
    RETURNING id, inference_id
), i AS (
    INSERT INTO routing.inferences
           (id, outcome_id, attempt_no, agent_id, model_slug, status, request_payload,
            input_tokens)
    SELECT o.inference_id, o.id, 1, %(agent)s, %(slug)s, 'routed', %(payload)s, %(tin)s FROM o
)
SELECT id, inference_id FROM o
"""
FLOOR_COMPLETE = """
WITH i AS (
    UPDATE routing.inferences
       SET status = 'succeeded', response_payload = %(response)s, input_tokens = %(tin)s,
           output_tokens = %(tout)s, cost_usd = %(cost)s, latency_ms = 5,
           completed_at = clock_timestamp()
     WHERE id = %(iid)s
    RETURNING outcome_id
)
UPDATE routing.routing_outcomes
   SET outcome_status = 'succeeded', cost_actual_usd = %(cost)s, observed_latency_ms = 5,
       judge_status = 'unlabeled', completed_at = clock_timestamp()
 WHERE id = (SELECT outcome_id FROM i)
"""
BARE_INSERT_OUTCOME = f"""
INSERT INTO routing.routing_outcomes ({_OUTCOME_COLUMNS}, inference_id, attempts)
VALUES (%(rid)s, %(agent)s, %(tenant)s, %(task)s, %(rule)s, %(slug)s, %(minq)s, %(projected)s,
        %(explanation)s, nextval('routing.inferences_id_seq'), 1)
RETURNING id, inference_id
"""
BARE_INSERT_INFERENCE = """
INSERT INTO routing.inferences
       (id, outcome_id, attempt_no, agent_id, model_slug, status, request_payload, input_tokens)
VALUES (%(iid)s, %(oid)s, 1, %(agent)s, %(slug)s, 'routed', %(payload)s, %(tin)s)
"""
BARE_COMPLETE_INFERENCE = """
UPDATE routing.inferences
   SET status = 'succeeded', response_payload = %(response)s, input_tokens = %(tin)s,
       output_tokens = %(tout)s, cost_usd = %(cost)s, latency_ms = 5,
       completed_at = clock_timestamp()
 WHERE id = %(iid)s
"""
BARE_COMPLETE_OUTCOME = """
UPDATE routing.routing_outcomes
   SET outcome_status = 'succeeded', cost_actual_usd = %(cost)s, observed_latency_ms = 5,
       judge_status = 'unlabeled', completed_at = clock_timestamp()
 WHERE id = %(oid)s
"""
# The old gateway's routing input: every model of the catalog with what it ranks them by.
LEGACY_READ_CATALOG = """
SELECT slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior,
       m_allowed, enabled, expected_latency_ms
  FROM routing.models
"""
LEGACY_INSERT_OUTCOME = f"""
INSERT INTO routing.routing_outcomes ({_OUTCOME_COLUMNS}, attempts)
VALUES (%(rid)s, %(agent)s, %(tenant)s, %(task)s, %(rule)s, %(slug)s, %(minq)s, %(projected)s,
        %(explanation)s, 1)
RETURNING id
"""
LEGACY_INSERT_INFERENCE = """
INSERT INTO routing.inferences (agent_id, model_slug, status, request_payload, input_tokens)
VALUES (%(agent)s, %(slug)s, 'routed', %(payload)s, %(tin)s)
RETURNING id
"""
LEGACY_BACKFILL = "UPDATE routing.routing_outcomes SET inference_id = %(iid)s WHERE id = %(oid)s"


@dataclass(frozen=True)
class Workload:
    """One request's figures, and what the router decided for it (for the plain-SQL paths)."""

    agent: str = str(AGENT)
    tenant: str = str(TENANT)
    task: str = "general"
    tin: int = 12
    tout: int = 3
    max_tokens: int = 64
    payload: dict[str, Any] = field(default_factory=lambda: dict(PAYLOAD))
    response: dict[str, Any] = field(default_factory=lambda: dict(RESPONSE))
    explanation: dict[str, Any] = field(default_factory=dict)
    rule: str = ""
    slug: str = ""
    minq: str = "0"
    projected: str = "0"
    cost: str = "0"

    @classmethod
    def decided(cls, conn: psycopg.Connection[Any], **kw: Any) -> Workload:
        """The workload with what the deployed package writes for it.

        One probe request goes through the package (insert_decision + complete_decision);
        the figures its outcome and attempt were stored with (the explanation as the plan
        stores it — full or compact — the floor, the projected and settled costs) become
        what the plain-SQL paths write, so they write the same bytes whatever the plan.
        """
        base = cls(**kw)
        package(conn, base)(f"probe-{uuid.uuid4().hex}")
        row = conn.execute(
            """
            SELECT o.explanation, o.decision_rule, o.chosen_model_slug, o.min_quality,
                   o.projected_cost_usd, o.cost_actual_usd
              FROM routing.routing_outcomes o
             WHERE o.agent_id = %s AND o.request_id LIKE 'probe-%%'
             ORDER BY o.id DESC LIMIT 1
            """,
            (base.agent,),
        ).fetchone()
        assert row is not None
        explanation, rule, slug, minq, projected, cost = row
        return cls(
            **{
                **asdict(base),
                "explanation": explanation,
                "rule": rule,
                "slug": slug,
                "minq": str(minq),
                "projected": str(projected),
                "cost": str(cost),
            }
        )

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = asdict(self)
        for key in ("payload", "response", "explanation"):
            p[key] = Jsonb(p[key])
        for key in ("minq", "projected", "cost"):
            p[key] = Decimal(p[key])
        return p


Path = Callable[[str], None]


def package(conn: psycopg.Connection[Any], w: Workload) -> Path:
    payload, response = Jsonb(w.payload), Jsonb(w.response)

    def one(rid: str) -> None:
        row = conn.execute(
            INSERT_DECISION, (rid, w.agent, w.task, w.tin, w.max_tokens, payload)
        ).fetchone()
        assert row is not None and row[1] is not None and row[6] is None, row
        conn.execute(COMPLETE_DECISION, (row[1], response, w.tin, w.tout, 5)).fetchone()

    return one


def floor(conn: psycopg.Connection[Any], w: Workload) -> Path:
    base = w.params()

    def one(rid: str) -> None:
        row = conn.execute(FLOOR_INSERT, {**base, "rid": rid}).fetchone()
        assert row is not None
        conn.execute(FLOOR_COMPLETE, {**base, "iid": row[1]})

    return one


def bare_tx(conn: psycopg.Connection[Any], w: Workload) -> Path:
    base = w.params()

    def one(rid: str) -> None:
        with conn.transaction():
            row = conn.execute(BARE_INSERT_OUTCOME, {**base, "rid": rid}).fetchone()
            assert row is not None
            p = {**base, "oid": row[0], "iid": row[1]}
            conn.execute(BARE_INSERT_INFERENCE, p)
        with conn.transaction():
            conn.execute(BARE_COMPLETE_INFERENCE, p)
            conn.execute(BARE_COMPLETE_OUTCOME, p)

    return one


def legacy(conn: psycopg.Connection[Any], w: Workload) -> Path:
    base = w.params()

    def one(rid: str) -> None:
        models = conn.execute(LEGACY_READ_CATALOG).fetchall()
        assert models, "the old path routes over the catalog"
        row = conn.execute(LEGACY_INSERT_OUTCOME, {**base, "rid": rid}).fetchone()
        assert row is not None
        p = {**base, "oid": row[0]}
        row = conn.execute(LEGACY_INSERT_INFERENCE, p).fetchone()
        assert row is not None
        p["iid"] = row[0]
        conn.execute(LEGACY_BACKFILL, p)
        conn.execute(BARE_COMPLETE_INFERENCE, p)
        conn.execute(BARE_COMPLETE_OUTCOME, p)

    return one


def insert_only(conn: psycopg.Connection[Any], w: Workload) -> Path:
    """``insert_decision`` alone (the attempt is left open): the P5/P6 latency probe."""
    payload = Jsonb(w.payload)

    def one(rid: str) -> None:
        row = conn.execute(
            INSERT_DECISION, (rid, w.agent, w.task, w.tin, w.max_tokens, payload)
        ).fetchone()
        assert row is not None and row[6] is None, row

    return one


PATHS: dict[str, Callable[[psycopg.Connection[Any], Workload], Path]] = {
    "package": package,
    "floor": floor,
    "bare_tx": bare_tx,
    "legacy": legacy,
    "insert_only": insert_only,
}
