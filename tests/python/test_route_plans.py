"""The write path's route plans (route_plans) under concurrent connections.

A plan is a cache of the router's catalog work, valid while the three epochs it was built
at (catalog, cooldowns, quality) are current. These tests race decisions against catalog
changes and check that no decision is ever explained from a catalog state other than the
one its own statement saw, and that the three counters keep the writers of different
inputs out of each other's way: an operator's open catalog transaction holds up neither a
gateway's 429 nor a judge.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg

from conftest import connect

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000d0001")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000d0000")

DECIDE = (
    "SELECT outcome_id, inference_id, model_slug FROM routing.insert_decision("
    "%s::text, %s::uuid, 'general'::text, 1000::int, 500::int)"
)


def _setup(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,"
        " price_out_per_mtok_usd, q_prior, m_allowed) VALUES"
        " ('rp_a', 'p1', 'a-1', 1, 2, 0.8, true),"
        " ('rp_b', 'p2', 'b-1', 2, 3, 0.8, true),"
        " ('rp_c', 'p3', 'c-1', 3, 4, 0.8, true)"
    )
    conn.execute(
        "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%s, %s, 'planner')",
        (AGENT, TENANT),
    )


def test_decisions_racing_catalog_changes_are_explained_from_the_state_they_saw(db: str) -> None:
    """Four deciders and a price changer run at once; each outcome's winner and every
    figure of its stored explanation must match the price of its winner at the time."""
    with connect(db) as conn:
        _setup(conn)

    stop = threading.Event()
    errors: list[BaseException] = []

    def change_prices() -> None:
        try:
            with connect(db) as c:
                k = 0
                while not stop.is_set():
                    k += 1
                    # rp_a and rp_b trade places as the cheapest, in one statement each.
                    c.execute(
                        "UPDATE routing.models SET price_in_per_mtok_usd = %s WHERE slug = 'rp_a'",
                        (1 if k % 2 else 5,),
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def decide(i: int) -> None:
        try:
            with connect(db) as c:
                for n in range(60):
                    c.execute(DECIDE, (f"rp-{i}-{n}", AGENT)).fetchone()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    changer = threading.Thread(target=change_prices)
    deciders = [threading.Thread(target=decide, args=(i,)) for i in range(4)]
    changer.start()
    for t in deciders:
        t.start()
    for t in deciders:
        t.join(timeout=300)
    stop.set()
    changer.join(timeout=60)
    assert not errors, errors

    with connect(db) as conn:
        rows = conn.execute(
            "SELECT o.chosen_model_slug, o.explanation,"
            "       routing.explain_outcome(o.id) AS doc"
            "  FROM routing.routing_outcomes o WHERE o.agent_id = %s",
            (AGENT,),
        ).fetchall()
        assert len(rows) == 240
        winners = {r[0] for r in rows}
        assert winners == {"rp_a", "rp_b"}, f"both catalog states should have been seen: {winners}"
        for slug, explanation, doc in rows:
            top = explanation["candidates"][0]
            # rp_a costs 1000 x 1 + 500 x 2 = 0.002 at price 1, 0.006 at price 5; rp_b 0.0035.
            assert top["slug"] == slug == explanation["chosen_model_slug"]
            expected = {"rp_a": "0.002", "rp_b": "0.0035"}[slug]
            assert str(top["projected_cost_usd"]) == expected, (slug, top)
            assert [c["slug"] for c in doc["candidates"]][:1] == [slug]
            # The snapshot the outcome names holds the prices of the state it saw.
            prices = {c["slug"]: c["projected_cost_usd"] for c in doc["candidates"]}
            assert str(prices["rp_a"]) == ("0.002" if slug == "rp_a" else "0.006"), prices


def test_an_open_catalog_transaction_holds_up_neither_a_429_nor_a_judge(db: str) -> None:
    with connect(db) as conn:
        _setup(conn)
        decided = conn.execute(DECIDE, ("rp-429", AGENT)).fetchone()
        assert decided is not None
        done = conn.execute(DECIDE, ("rp-judged", AGENT)).fetchone()
        assert done is not None
        conn.execute(
            "SELECT * FROM routing.complete_decision("
            "%s::bigint, '{}'::jsonb, 10::int, 5::int, 3::int)",
            (done[1],),
        )

    with connect(db, autocommit=False) as operator, connect(db) as gateway, connect(db) as judge:
        operator.execute("UPDATE routing.models SET enabled = false WHERE slug = 'rp_c'")
        # The operator's transaction stays open, holding the catalog counter.
        gateway.execute("SET lock_timeout = '3s'")
        judge.execute("SET lock_timeout = '3s'")
        failed = gateway.execute(
            "SELECT action, model_slug FROM routing.fail_inference("
            "%s::bigint, 'rate_limited'::text, 'slow down'::text, 429::int, 1000::int)",
            (decided[1],),
        ).fetchone()
        assert failed is not None and failed[0] in ("retry", "failover"), failed
        assert gateway.execute(
            "SELECT count(*) FROM routing.model_cooldowns WHERE model_slug = %s", (decided[2],)
        ).fetchone() == (1,)
        claimed = judge.execute(
            "SELECT outcome_id FROM routing.claim_judge_batch('rp-judge'::text, 5::int)"
        ).fetchall()
        assert [r[0] for r in claimed] == [done[0]]
        judged = judge.execute(
            "SELECT judged_samples FROM routing.record_judgement("
            "%s::bigint, 'labeled'::text, 4::numeric, 'fine'::text, 'judge-1'::text)",
            (done[0],),
        ).fetchone()
        assert judged == (1,)
        # While the operator still holds the catalog counter, a decision routes from the
        # catalog as committed, with the cooldown and the new quality in it.
        explained = gateway.execute(
            "SELECT routing._explain_from_plan(NULL, 'general', 1000, 500, now())"
            " = routing._explain_route(NULL, 'general', 1000, 500, now(), 'compact')"
        ).fetchone()
        assert explained == (True,)
        operator.rollback()


def test_a_rebuild_never_waits_for_another_requests_rebuild(db: str) -> None:
    """Two requests find the plan stale at once: the second does not queue behind the
    first's uncommitted plan (it uses the plan it built itself)."""
    same = (
        "SELECT routing._explain_from_plan(NULL, 'general', 1000, 500, now())"
        " = routing._explain_route(NULL, 'general', 1000, 500, now(), 'compact')"
    )
    with connect(db) as conn:
        _setup(conn)
        assert conn.execute(same).fetchone() == (True,)
        # A new catalog epoch with the same content: the snapshot exists, the plan is stale.
        conn.execute("UPDATE routing.settings SET max_attempts = max_attempts")
    with connect(db, autocommit=False) as first, connect(db) as second:
        assert first.execute(same).fetchone() == (True,)  # rebuilt; its transaction stays open
        second.execute("SET lock_timeout = '2s'")
        assert second.execute(same).fetchone() == (True,)
        first.commit()
        built = second.execute(
            "SELECT epochs = (SELECT array_agg(epoch ORDER BY source) FROM routing.route_epochs)"
            "  FROM routing.route_plans WHERE task_type = 'general'"
        ).fetchone()
        assert built == (True,), "the first request's plan is the one stored"
