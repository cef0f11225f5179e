"""routing.explain_outcome gives back exactly what choose_route returned (route_snapshots).

Many random decisions over a catalog that keeps changing between them (prices, vetoes,
disabled models, learned quality, cooldowns starting and ending, per-call and daily caps,
token counts, task types). Each decision is made in one transaction with choose_route
beside it (same now(), so the same document), and explain_outcome must equal that
document (jsonb equality) right away and again at the end, after every later change:
a snapshot is immutable and projected costs come from the outcome's own token counts.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from conftest import connect

TENANT = uuid.UUID("00000000-0000-4000-8000-0000000f0000")
AGENTS = [uuid.UUID(f"00000000-0000-4000-8000-0000000f000{n}") for n in range(1, 4)]
SLUGS = [f"x_{n:02d}" for n in range(24)]
TASKS = ["general", "chat", "code", "reasoning", "not_listed"]


def _seed(conn: psycopg.Connection[Any], rng: random.Random) -> None:
    for slug in SLUGS:
        conn.execute(
            "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
            " price_out_per_mtok_usd, q_prior, m_allowed) VALUES (%s, 'p', %s, %s, %s, %s, %s)",
            (slug, slug, rng.choice([0.5, 1, 2, 3]), rng.choice([1, 2, 4]), 0.9, True),
        )
    for n, agent in enumerate(AGENTS):
        conn.execute(
            "INSERT INTO routing.agents (id, tenant_id, name, per_call_cap_usd, daily_cap_usd)"
            " VALUES (%s, %s, %s, %s, %s)",
            (agent, TENANT, f"agent-{n}", [None, 0.004, None][n], [None, None, 0.05][n]),
        )


def _mutate(conn: psycopg.Connection[Any], rng: random.Random) -> None:
    slug = rng.choice(SLUGS)
    change = rng.randrange(8)
    if change == 0:
        conn.execute(
            "UPDATE routing.models SET price_in_per_mtok_usd = %s, price_out_per_mtok_usd = %s"
            " WHERE slug = %s",
            (rng.choice([0, 0.25, 1, 1.5, 7]), rng.choice([0.5, 1, 3, 9]), slug),
        )
    elif change == 1:
        conn.execute(
            "UPDATE routing.models SET m_allowed = %s WHERE slug = %s",
            (rng.choice([True, False, None]), slug),
        )
    elif change == 2:
        conn.execute("UPDATE routing.models SET enabled = NOT enabled WHERE slug = %s", (slug,))
    elif change == 3:
        conn.execute(
            "UPDATE routing.models SET q_prior = %s WHERE slug = %s",
            (rng.choice([None, 0.5, 0.7, 0.8, 0.95]), slug),
        )
    elif change == 4:
        conn.execute(
            "INSERT INTO routing.model_task_quality"
            " (model_slug, task_type, judged_samples, score_sum)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (model_slug, task_type) DO UPDATE"
            " SET judged_samples = excluded.judged_samples, score_sum = excluded.score_sum",
            (slug, rng.choice(TASKS), rng.choice([5, 40]), rng.randrange(40, 200)),
        )
    elif change == 5:
        conn.execute(
            "INSERT INTO routing.model_cooldowns (model_slug, cooling_until)"
            " VALUES (%s, now() + make_interval(secs => %s)) ON CONFLICT (model_slug)"
            " DO UPDATE SET cooling_until = excluded.cooling_until",
            (slug, rng.choice([-5, 30, 600])),
        )
    elif change == 6:
        conn.execute("DELETE FROM routing.model_cooldowns WHERE model_slug = %s", (slug,))
    else:
        conn.execute(
            "UPDATE routing.agents SET per_call_cap_usd = %s WHERE id = %s",
            (rng.choice([None, 0.002, 0.006, 0.02]), rng.choice(AGENTS)),
        )


def _explain(conn: psycopg.Connection[Any], outcome_id: int) -> Any:
    row = conn.execute("SELECT routing.explain_outcome(%s::bigint)", (outcome_id,)).fetchone()
    assert row is not None
    return row[0]


def test_explain_outcome_matches_choose_route_over_random_decisions(db: str) -> None:
    rng = random.Random(20261201)
    expected: dict[int, Any] = {}
    with connect(db, autocommit=False) as conn:
        _seed(conn, rng)
        conn.commit()
        for n in range(160):
            for _ in range(rng.randrange(3)):
                _mutate(conn, rng)
            conn.commit()
            agent, task = rng.choice(AGENTS), rng.choice(TASKS)
            tokens = (rng.randrange(0, 5000), rng.randrange(1, 3000))
            # One transaction: the same now() for both, so the same document.
            doc_row = conn.execute(
                "SELECT routing.choose_route(%s::uuid, %s::text, %s::int, %s::int)",
                (agent, task, *tokens),
            ).fetchone()
            decided = conn.execute(
                "SELECT outcome_id, outcome_status FROM routing.insert_decision("
                "%s::text, %s::uuid, %s::text, %s::int, %s::int)",
                (f"explain-{n}", agent, task, *tokens),
            ).fetchone()
            assert doc_row is not None and decided is not None
            doc, (outcome_id, status) = doc_row[0], decided
            explained = _explain(conn, outcome_id)
            if status == "failed_pre_dispatch":
                assert "refusal" in explained
                explained = {k: v for k, v in explained.items() if k != "refusal"}
            assert explained == doc, f"decision {n}"
            # Compare as jsonb too (numeric scale included), not only as Python values.
            same = conn.execute(
                "SELECT routing.explain_outcome(%s::bigint) - 'refusal' = %s::jsonb",
                (outcome_id, Jsonb(doc)),
            ).fetchone()
            assert same is not None and same[0] is True, f"decision {n} (jsonb)"
            expected[outcome_id] = explained
            conn.commit()

        # Every later change left the earlier explanations as they were.
        for outcome_id, doc in expected.items():
            again = _explain(conn, outcome_id)
            again.pop("refusal", None)
            assert again == doc
        stats = conn.execute(
            "SELECT count(DISTINCT explanation ->> 'snapshot'), count(*),"
            " count(*) FILTER (WHERE explanation ? 'dropped') FROM routing.routing_outcomes"
        ).fetchone()
        assert stats is not None
        snapshots, outcomes, whole = stats
        assert outcomes == 160
        assert whole == 0, "every outcome is stored compact"
        # Decisions between two catalog changes share their snapshot.
        assert snapshots < outcomes
