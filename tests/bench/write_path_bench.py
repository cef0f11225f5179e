"""What one request costs the database on each write path (not part of `make test`).

    python tests/bench/write_path_bench.py [--n 5000] [--warmup 200]

Starts its own throwaway PostgreSQL (routing_ledger.cluster.LocalCluster), deploys the
Sqitch plan into a template, and measures, serially on one connection each, the per-request
cost of:

  package  routing.insert_decision + routing.complete_decision: two round trips, each one
           statement and one transaction (autocommit), routing and checks included.
  bare     the same row writes in plain SQL as the owner, no routing: INSERT outcome and
           INSERT inference in one transaction, then UPDATE inference and UPDATE outcome in
           another (BEGIN and COMMIT are round trips of their own).
  legacy   the multi-statement path routing-ledger replaces, each statement its own round
           trip and transaction: INSERT outcome with inference_id NULL; INSERT inference;
           UPDATE outcome SET inference_id (the back-fill); at completion UPDATE inference;
           UPDATE outcome. It runs on a database whose constraint has the old in-flight
           escape (outcome_status IS NULL), which is what let this path leave orphans.

Latency is per request (both phases, no provider call in between). The cluster runs with
fsync off, so these are CPU and round-trip costs, not disk costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python_client" / "src"))

from routing_ledger.cluster import LocalCluster, find_project_dir, sqitch  # noqa: E402
from routing_ledger.ledger import COMPLETE_DECISION, INSERT_DECISION  # noqa: E402

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000b2")
PAYLOAD = {"messages": [{"role": "user", "content": "benchmark request"}], "max_tokens": 64}
RESPONSE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}

CATALOG = f"""
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('b-small', 'mistral', 'mistral-small', 0.2, 0.6, 0.75, true),
       ('b-mini',  'openai',  'gpt-4o-mini',   0.15, 0.6, 0.80, true),
       ('b-large', 'mistral', 'mistral-large', 2.0, 6.0, 0.90, true),
       ('b-4o',    'openai',  'gpt-4o',        2.5, 10.0, 0.93, true),
       ('b-veto',  'other',   'unvetted',      0.1, 0.1, 0.95, false);
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

BARE_INSERT_OUTCOME = """
INSERT INTO routing.routing_outcomes
       (request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
        min_quality, projected_cost_usd, explanation, inference_id, attempts)
VALUES (%s, %s, %s, 'general', 'cheapest_clearing_floor', 'b-mini', 0.68, 0.00004, %s,
        nextval('routing.inferences_id_seq'), 1)
RETURNING id, inference_id
"""
BARE_INSERT_INFERENCE = """
INSERT INTO routing.inferences
       (id, outcome_id, attempt_no, agent_id, model_slug, status, request_payload, input_tokens)
VALUES (%s, %s, 1, %s, 'b-mini', 'routed', %s, 12)
"""
BARE_COMPLETE_INFERENCE = """
UPDATE routing.inferences
   SET status = 'succeeded', response_payload = %s, input_tokens = 12, output_tokens = 3,
       cost_usd = 0.000004, latency_ms = 5, completed_at = clock_timestamp()
 WHERE id = %s
"""
BARE_COMPLETE_OUTCOME = """
UPDATE routing.routing_outcomes
   SET outcome_status = 'succeeded', cost_actual_usd = 0.000004, observed_latency_ms = 5,
       judge_status = 'unlabeled', completed_at = clock_timestamp()
 WHERE id = %s
"""
LEGACY_INSERT_OUTCOME = """
INSERT INTO routing.routing_outcomes
       (request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
        min_quality, projected_cost_usd, explanation, attempts)
VALUES (%s, %s, %s, 'general', 'cheapest_clearing_floor', 'b-mini', 0.68, 0.00004, %s, 1)
RETURNING id
"""
LEGACY_INSERT_INFERENCE = """
INSERT INTO routing.inferences (agent_id, model_slug, status, request_payload, input_tokens)
VALUES (%s, 'b-mini', 'routed', %s, 12)
RETURNING id
"""
LEGACY_BACKFILL = "UPDATE routing.routing_outcomes SET inference_id = %s WHERE id = %s"

EXPLANATION = {"decision_rule": "cheapest_clearing_floor", "chosen_model_slug": "b-mini"}


def package_path(conn: psycopg.Connection[Any]) -> Callable[[int], None]:
    def one(i: int) -> None:
        row = conn.execute(
            INSERT_DECISION, (f"pkg-{i}", AGENT, "general", 12, 64, Jsonb(PAYLOAD), False)
        ).fetchone()
        assert row is not None and row[6] is None, row
        conn.execute(COMPLETE_DECISION, (row[1], Jsonb(RESPONSE), 12, 3, 5, "provider")).fetchone()

    return one


def bare_path(conn: psycopg.Connection[Any]) -> Callable[[int], None]:
    def one(i: int) -> None:
        with conn.transaction():
            row = conn.execute(
                BARE_INSERT_OUTCOME, (f"bare-{i}", AGENT, TENANT, Jsonb(EXPLANATION))
            ).fetchone()
            assert row is not None
            outcome_id, inference_id = row
            conn.execute(BARE_INSERT_INFERENCE, (inference_id, outcome_id, AGENT, Jsonb(PAYLOAD)))
        with conn.transaction():
            conn.execute(BARE_COMPLETE_INFERENCE, (Jsonb(RESPONSE), inference_id))
            conn.execute(BARE_COMPLETE_OUTCOME, (outcome_id,))

    return one


def legacy_path(conn: psycopg.Connection[Any]) -> Callable[[int], None]:
    def one(i: int) -> None:
        row = conn.execute(
            LEGACY_INSERT_OUTCOME, (f"legacy-{i}", AGENT, TENANT, Jsonb(EXPLANATION))
        ).fetchone()
        assert row is not None
        outcome_id = row[0]
        row = conn.execute(LEGACY_INSERT_INFERENCE, (AGENT, Jsonb(PAYLOAD))).fetchone()
        assert row is not None
        inference_id = row[0]
        conn.execute(LEGACY_BACKFILL, (inference_id, outcome_id))
        conn.execute(BARE_COMPLETE_INFERENCE, (Jsonb(RESPONSE), inference_id))
        conn.execute(BARE_COMPLETE_OUTCOME, (outcome_id,))

    return one


def measure(one: Callable[[int], None], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        one(-1 - i)
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        one(i)
        latencies.append(time.perf_counter() - started)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="requests per path (5000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests (200)")
    args = parser.parse_args(argv)

    paths = {
        "package": (package_path, "insert_decision + complete_decision (2 round trips)"),
        "bare": (bare_path, "bare SQL, 2 transactions x (BEGIN, 2 statements, COMMIT)"),
        "legacy": (legacy_path, "old path: 5 autocommit statements incl. back-fill"),
    }
    results: dict[str, list[float]] = {}
    with LocalCluster() as cluster:
        cluster.create_database("bench_template")
        sqitch(cluster, "bench_template", "deploy", project_dir=find_project_dir())
        with cluster.connect("bench_template") as conn:
            conn.execute(CATALOG)
        for name, (factory, _) in paths.items():
            db = cluster.create_database(f"bench_{name}", template="bench_template")
            with cluster.connect(db) as conn:
                if name == "legacy":
                    conn.execute(LEGACY_CONSTRAINT)
                print(f"{name}: {args.n} requests …", file=sys.stderr, flush=True)
                results[name] = measure(factory(conn), args.n, args.warmup)
                conn.execute("VACUUM ANALYZE routing.routing_outcomes, routing.inferences")

    print()
    print(f"{'path':<9} {'requests/s':>11} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}  what")
    for name, latencies in results.items():
        mean = statistics.fmean(latencies)
        print(
            f"{name:<9} {1 / mean:>11.0f} {mean * 1e3:>8.3f} "
            f"{percentile(latencies, 0.50) * 1e3:>8.3f} {percentile(latencies, 0.99) * 1e3:>8.3f}"
            f"  {paths[name][1]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
