"""How long routing.integrity_report takes on a ledger of a million outcomes (or more).

Not part of ``make test``: it starts its own throwaway cluster, deploys the Sqitch plan,
loads ``--rows`` outcomes with generate_series (about a minute for a million), and prints
the report, its timing over several runs, and the nested plan (auto_explain) with the time
each metric takes.

    .venv/bin/python tests/bench/integrity_report_bench.py [--rows 1000000] [--runs 5]

The ledger is shaped like production a year after the rollout, one request every 30 s:
88% succeeded (90% of them judged, 10% waiting for the judge), 6% failed, 3% rejected,
1% refused before dispatch, 0.1% orphans of the older write path (outcome with no
inference, its attempt unowned and stuck routed), 0.05% attempts stuck routed, and the
last 200 requests in flight. Secondary indexes are dropped during the load and rebuilt
from their own definitions afterwards (a sorted build instead of a million random
inserts); the database is the same as if every row had been inserted with them in place.

The partial index routing_outcomes_succeeded_unjudged answers succeeded_not_judgeable.
If the deployed plan does not have it yet, the report is timed as deployed, then the index
is created and the report timed again.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from routing_ledger.cluster import LocalCluster, find_project_dir, sqitch_deploy

PROPOSED_INDEX = (
    "CREATE INDEX IF NOT EXISTS routing_outcomes_succeeded_unjudged ON routing.routing_outcomes "
    "(id)"
    " WHERE outcome_status = 'succeeded' AND judge_status IS NULL"
)

LOAD_SQL = """
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
       price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('bench-small', 'bench', 'small', 0.1, 0.3, 0.7, true), ('bench-mid', 'bench', 'mid', 1,
       3, 0.85, true),
       ('bench-big', 'bench', 'big', 5, 15, 0.95, true);
INSERT INTO routing.agents (id, tenant_id, name)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
       '00000000-0000-4000-8000-00000000ffff', 'bench ' || g
  FROM generate_series(1, 50) g;

CREATE TEMP TABLE k AS
SELECT g AS id,
       CASE WHEN g > %(n)s - 200 THEN 'flight'
            WHEN g %% 10000 < 8800 THEN 'ok'
            WHEN g %% 10000 < 9400 THEN 'fail'
            WHEN g %% 10000 < 9700 THEN 'rej'
            WHEN g %% 10000 < 9800 THEN 'pre'
            WHEN g %% 10000 < 9810 THEN 'orphan'
            WHEN g %% 10000 < 9815 THEN 'stuck'
            ELSE 'ok' END AS kind,
       ('00000000-0000-4000-8000-' || lpad((g %% 50 + 1)::text, 12, '0'))::uuid AS agent_id,
       (ARRAY['bench-small', 'bench-mid', 'bench-big'])[g %% 3 + 1] AS slug,
       now() - make_interval(secs => (%(n)s - g) * 30.0) AS created_at
  FROM generate_series(1, %(n)s) g;

INSERT INTO routing.routing_outcomes (id, request_id, agent_id, task_type, decision_rule,
       chosen_model_slug,
       projected_cost_usd, explanation, inference_id, outcome_status, cost_actual_usd,
              observed_latency_ms, attempts,
       judge_status, judge_score, judge_model, judge_labeled_at, created_at, completed_at)
SELECT k.id, 'req-' || k.id, k.agent_id, (ARRAY['chat', 'code', 'general'])[k.id %% 3 + 1],
       CASE k.kind WHEN 'rej' THEN 'no_candidate_clears_floor' WHEN 'pre' THEN 'failed_pre_dispatch'
                   ELSE 'cheapest_clearing_floor' END,
       CASE WHEN k.kind = 'rej' THEN NULL ELSE k.slug END,
       0.0012, '{"candidates": [], "dropped": []}',
       CASE WHEN k.kind IN ('rej', 'pre', 'orphan') THEN NULL ELSE k.id END,
       CASE k.kind WHEN 'ok' THEN 'succeeded' WHEN 'fail' THEN 'failed_provider'
                   WHEN 'rej' THEN 'rejected'
                   WHEN 'pre' THEN 'failed_pre_dispatch' END,
       CASE WHEN k.kind = 'ok' THEN 0.0005 END,
       CASE WHEN k.kind = 'ok' THEN 900 END,
       CASE WHEN k.kind IN ('rej', 'pre', 'orphan') THEN 0 ELSE 1 END,
       CASE WHEN k.kind = 'ok'
            THEN CASE WHEN k.id %% 10 = 0 THEN 'unlabeled' ELSE 'labeled' END END,
       CASE WHEN k.kind = 'ok' AND k.id %% 10 <> 0 THEN 1 + k.id %% 5 END,
       CASE WHEN k.kind = 'ok' AND k.id %% 10 <> 0 THEN 'judge' END,
       CASE WHEN k.kind = 'ok' AND k.id %% 10 <> 0 THEN k.created_at + interval '1 hour' END,
       k.created_at,
       CASE WHEN k.kind IN ('flight', 'orphan',
              'stuck') THEN NULL ELSE k.created_at + interval '2 seconds' END
  FROM k;

INSERT INTO routing.inferences (id, outcome_id, attempt_no, agent_id, model_slug, status,
       error_code, error_message,
       request_payload, response_payload, input_tokens, output_tokens, cost_usd, latency_ms,
              created_at, completed_at)
SELECT k.id,
       CASE WHEN k.kind = 'orphan' THEN NULL ELSE k.id END,
       1, k.agent_id, k.slug,
       CASE k.kind WHEN 'ok' THEN 'succeeded' WHEN 'fail' THEN 'failed' ELSE 'routed' END,
       CASE WHEN k.kind = 'fail' THEN 'server_error' END,
       CASE WHEN k.kind = 'fail' THEN 'HTTP 503 Service Unavailable' END,
       '{"messages": [{"role": "user", "content": "hello"}]}',
       CASE WHEN k.kind = 'ok' THEN '{"content": "hi"}'::jsonb END,
       100, CASE WHEN k.kind = 'ok' THEN 20 END,
       CASE WHEN k.kind = 'ok' THEN 0.0005 END,
       CASE WHEN k.kind = 'ok' THEN 900 END,
       k.created_at + interval '1 second',
       CASE WHEN k.kind IN ('ok', 'fail') THEN k.created_at + interval '2 seconds' END
  FROM k WHERE k.kind NOT IN ('rej', 'pre');
SELECT setval('routing.routing_outcomes_id_seq', %(n)s), setval('routing.inferences_id_seq', %(n)s);
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


def load(conn: psycopg.Connection[Any], n: int) -> float:
    """Load ``n`` outcomes; returns the seconds it took."""
    started = time.perf_counter()
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
        # Several statements: no server-side parameters; n is an int.
        conn.execute(LOAD_SQL.replace("%(n)s", str(int(n))).replace("%%", "%"))  # type: ignore[arg-type]
        for _, definition in indexes:
            conn.execute(definition)
        # Foreign keys first (validated by one join each), the CHECK last, NOT VALID as
        # on a database that still holds the older path's orphans.
        for table, name, definition in sorted(constraints, key=lambda c: c[2].startswith("CHECK")):
            if definition.startswith("CHECK"):
                definition = definition.removesuffix(" NOT VALID") + " NOT VALID"
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    conn.execute("VACUUM (ANALYZE) routing.routing_outcomes")
    conn.execute("VACUUM (ANALYZE) routing.inferences")
    return time.perf_counter() - started


def time_report(conn: psycopg.Connection[Any], runs: int) -> tuple[list[float], float]:
    """Wall times (ms) of ``runs`` calls after one warm-up, and EXPLAIN ANALYZE's execution time."""
    conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN (ANALYZE) SELECT * FROM routing.integrity_report()"
        ).fetchall()
    )
    match = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return times, float(match.group(1)) if match else float("nan")


def nested_plan(conn: psycopg.Connection[Any]) -> list[str]:
    """The report's own query plan with actual times, via auto_explain at NOTICE level."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting, value in (
        ("log_min_duration", "0"),
        ("log_analyze", "on"),
        ("log_nested_statements", "on"),
        ("log_timing", "on"),
        ("log_level", "notice"),
    ):
        conn.execute(f"SET auto_explain.{setting} = {value}")
    conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
    conn.execute("SET auto_explain.log_min_duration = -1")
    text = next((n for n in notices if "integrity_metrics" in n), "")
    keep = re.compile(
        r"InitPlan|Scan using|Seq Scan|Parallel|Nested Loop|Hash Join|^Query Text|^Sort"
    )
    return [line for line in text.splitlines() if keep.search(line.strip()) or "Execution" in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="outcomes to load (default 1,000,000)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs of the report (default 5)")
    args = parser.parse_args(argv)

    project = find_project_dir(Path(__file__).resolve().parent)
    with LocalCluster(settings={"shared_buffers": "256MB", "max_wal_size": "4GB"}) as cluster:
        cluster.create_database("bench")
        print(f"deploying the plan from {project} …", flush=True)
        sqitch_deploy(cluster.conninfo("bench"), project)
        with psycopg.connect(cluster.conninfo("bench"), autocommit=True) as conn:
            print(f"loading {args.rows:,} outcomes …", flush=True)
            seconds = load(conn, args.rows)
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM routing.routing_outcomes), (SELECT count(*) FROM "
                "routing.inferences)"
            ).fetchone()
            assert counts is not None
            print(f"loaded {counts[0]:,} outcomes and {counts[1]:,} inferences in {seconds:.0f} s")
            print("\nintegrity_report():")
            for metric, value in conn.execute(
                "SELECT * FROM routing.integrity_report()"
            ).fetchall():
                print(f"  {metric:<40} {value:>10,}")

            has_index = conn.execute(
                "SELECT to_regclass('routing.routing_outcomes_succeeded_unjudged') IS NOT NULL"
            ).fetchone() == (True,)
            rounds = [("as deployed", None)] + (
                [] if has_index else [("with the proposed index", PROPOSED_INDEX)]
            )
            for label, ddl in rounds:
                if ddl:
                    conn.execute(ddl)
                    conn.execute("ANALYZE routing.routing_outcomes")
                times, exec_ms = time_report(conn, args.runs)
                print(
                    f"\n{label}: {counts[0]:,} outcomes — median {statistics.median(times):.1f} ms,"
                    f" min {min(times):.1f} ms, max {max(times):.1f} ms over {args.runs} runs;"
                    f" EXPLAIN ANALYZE execution time {exec_ms:.1f} ms"
                )
                for line in nested_plan(conn):
                    print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
