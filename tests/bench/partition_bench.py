"""What partitions cost the write path and the integrity report (issue 11, item 1).

Not part of ``make test``: ``make bench-partition`` starts its own throwaway cluster with
durability on, deploys the Sqitch plan as checked out into three databases and prints:

* **insert cost**: lifecycles (insert_decision + complete_decision) and insert_decision
  alone, in interleaved rounds, on the unpartitioned ledger, on a partitioned one with 1
  partition pair and on one with 24 monthly pairs (each ledger holding ``--history`` rows
  spread over the last 24 months, so indexes are not empty);
* **report cost**: routing.integrity_report on ``--rows`` outcomes (1 M by default, 10 M
  with ``--big``) spread across 24 monthly partitions, against the same rows unpartitioned.

    .venv/bin/python tests/bench/partition_bench.py [--rows N] [--big] [--rounds 7] [--report-only]

History is written through the tables as the owner (generate_series; each outcome's key is
claimed by the partitioned layout's trigger), shaped like production: 85 % succeeded and
judged, 10 % waiting for the judge, 3 % failed, 1 % rejected, 1 % refused before dispatch,
the newest 100 in flight. Figures are medians of rounds on a shared machine: compare the
columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from typing import Any

import psycopg

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy

DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
}
AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000b0")

SEED = """
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
SELECT 'pb-' || lpad(g::text, 2, '0'), 'local', 'm' || g, 0.1 + g * 0.01, 0.3 + g * 0.02,
       0.6 + mod(g, 40) / 100.0, true
  FROM generate_series(1, 20) g
"""
AGENT_ROW = (
    "INSERT INTO routing.agents (id, tenant_id, name) VALUES (%(agent)s, %(tenant)s, 'bench')"
)

# Rows [lo, hi] of n, created over the last `days` days, oldest first.
OUTCOMES = """
INSERT INTO routing.routing_outcomes
       (id, request_id, agent_id, tenant_id, task_type, decision_rule, chosen_model_slug,
        min_quality, projected_cost_usd, inference_id, outcome_status, cost_actual_usd,
        attempts, judge_status, judge_score, created_at, completed_at)
SELECT g, 'h-' || g, %(agent)s, %(tenant)s, 'chat',
       CASE k WHEN 'rej' THEN 'no_candidate_enrolled' WHEN 'pre' THEN 'failed_pre_dispatch'
              ELSE 'cheapest_clearing_floor' END,
       CASE WHEN k <> 'rej' THEN 'pb-01' END, 0.58, 0.0001,
       CASE WHEN k NOT IN ('rej', 'pre') THEN g END,
       CASE k WHEN 'ok' THEN 'succeeded' WHEN 'queue' THEN 'succeeded'
              WHEN 'fail' THEN 'failed_provider' WHEN 'rej' THEN 'rejected'
              WHEN 'pre' THEN 'failed_pre_dispatch' END,
       CASE WHEN k IN ('ok', 'queue') THEN 0.0001 END,
       CASE WHEN k IN ('rej', 'pre') THEN 0 ELSE 1 END,
       CASE k WHEN 'ok' THEN 'labeled' WHEN 'queue' THEN 'unlabeled' END,
       CASE WHEN k = 'ok' THEN 4 END,
       t, CASE WHEN k <> 'flight' THEN t + interval '1 second' END
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g,
       LATERAL (SELECT now() - make_interval(days => %(days)s) * ((%(n)s - g)::float8 / %(n)s) AS t,
                       CASE WHEN g > %(n)s - 100 THEN 'flight'
                            WHEN mod(g, 100) < 85 THEN 'ok' WHEN mod(g, 100) < 95 THEN 'queue'
                            WHEN mod(g, 100) < 98 THEN 'fail' WHEN mod(g, 100) < 99 THEN 'rej'
                            ELSE 'pre' END AS k) x
"""
INFERENCES = """
INSERT INTO routing.inferences
       (id, outcome_id, outcome_created_at, attempt_no, agent_id, model_slug, status,
        error_code, error_message, input_tokens, output_tokens, cost_usd, latency_ms,
        created_at, completed_at)
SELECT o.id, o.id, o.created_at, 1, o.agent_id, o.chosen_model_slug,
       CASE WHEN o.outcome_status IS NULL THEN 'routed'
            WHEN o.outcome_status = 'succeeded' THEN 'succeeded' ELSE 'failed' END,
       CASE WHEN o.outcome_status = 'failed_provider' THEN 'server_error' END,
       CASE WHEN o.outcome_status = 'failed_provider' THEN 'HTTP 503' END,
       200, 30, 0.0001, 700, o.created_at, o.completed_at
  FROM routing.routing_outcomes o
 WHERE o.id BETWEEN %(lo)s AND %(hi)s AND o.inference_id IS NOT NULL
"""


def seed(conn: psycopg.Connection[Any]) -> None:
    conn.execute(SEED)
    conn.execute(AGENT_ROW, {"agent": AGENT, "tenant": TENANT})


def load_history(conn: psycopg.Connection[Any], n: int, days: int) -> float:
    started = time.monotonic()
    step = 200_000
    for lo in range(1, n + 1, step):
        hi = min(n, lo + step - 1)
        params = {"agent": AGENT, "tenant": TENANT, "lo": lo, "hi": hi, "n": n, "days": days}
        with conn.transaction():
            conn.execute(OUTCOMES, params)
            conn.execute(INFERENCES, params)
    for seq, table in (
        ("routing_outcomes_id_seq", "routing_outcomes"),
        ("inferences_id_seq", "inferences"),
    ):
        conn.execute(f"SELECT setval('routing.{seq}', (SELECT max(id) FROM routing.{table}))")
    conn.execute("VACUUM ANALYZE routing.routing_outcomes")
    conn.execute("VACUUM ANALYZE routing.inferences")
    return time.monotonic() - started


def partition(conn: psycopg.Connection[Any], back: int | None, ahead: int = 1) -> int:
    """Switch the empty ledger to monthly pairs for months -back..+ahead (back None: one pair
    holding everything up to the end of month +ahead). Returns the pairs attached."""
    conn.execute("SELECT routing.partition_ledger()")
    for (suffix,) in conn.execute(
        "SELECT DISTINCT suffix FROM routing.ledger_partitions"
    ).fetchall():
        conn.execute(f"DROP TABLE routing.routing_outcomes_{suffix}, routing.inferences_{suffix}")
    last = conn.execute(
        "SELECT range_to FROM routing._partition_range('month',"
        " now() + make_interval(months => %s))",
        (ahead,),
    ).fetchone()
    assert last is not None
    if back is None:
        conn.execute("SELECT routing._create_partition_pair('all', NULL, %s)", (last[0],))
        conn.execute("SELECT routing._link_partition_pair('all')")
    else:
        for k in range(-back, ahead + 1):
            conn.execute(
                "SELECT routing._create_partition_pair(r.suffix, r.range_from, r.range_to),"
                "       routing._link_partition_pair(r.suffix)"
                "  FROM routing._partition_range('month', now() + make_interval(months => %s)) r",
                (k,),
            )
    row = conn.execute(
        "SELECT count(*) FROM routing.ledger_partitions WHERE table_name = 'routing_outcomes'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def lifecycle(conn: psycopg.Connection[Any], rid: str) -> None:
    row = conn.execute(
        "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, 'general'::text, 12::int,"
        " 64::int, '{}'::jsonb, false)",
        (rid, AGENT),
    ).fetchone()
    assert row is not None and row[1] is not None, row
    conn.execute(
        "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 12::int, 3::int,"
        " 5::int, 'provider'::text)",
        (row[1],),
    ).fetchone()


def decide_only(conn: psycopg.Connection[Any], rid: str) -> None:
    conn.execute(
        "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, 'general'::text, 12::int,"
        " 64::int, '{}'::jsonb, false)",
        (rid, AGENT),
    ).fetchone()


def timed(conn: psycopg.Connection[Any], fn: Any, tag: str, calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        fn(conn, f"{tag}-{i}-{uuid.uuid4()}")
    return (time.perf_counter() - started) / calls * 1e6


def report_ms(conn: psycopg.Connection[Any], runs: int) -> float:
    conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="report ledger size")
    parser.add_argument("--big", action="store_true", help="--rows 10000000")
    parser.add_argument("--history", type=int, default=200_000, help="insert-cost ledger size")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300, help="calls per round")
    parser.add_argument("--report-only", action="store_true", help="skip the insert cost")
    args = parser.parse_args(argv)
    rows = 10_000_000 if args.big else args.rows
    project = find_project_dir()
    with LocalCluster(settings=DURABLE) as cluster:
        layouts: dict[str, int | None] = {
            "unpartitioned": 0,
            "1 partition": None,
            "24 partitions": 22,
        }
        if args.report_only:
            layouts = {}
        conns: dict[str, psycopg.Connection[Any]] = {}
        for k, (name, pairs) in enumerate(layouts.items()):
            db = f"pb{k}"
            cluster.create_database(db)
            sqitch_deploy(cluster.conninfo(db), project)
            conn = psycopg.connect(cluster.conninfo(db), autocommit=True)
            seed(conn)
            if pairs != 0:
                got = partition(conn, pairs)
                assert got == (1 if pairs is None else pairs + 2), (name, got)
            seconds = load_history(conn, args.history, days=660)
            print(f"{name}: {args.history} history rows loaded in {seconds:.1f} s", flush=True)
            conns[name] = conn

        results: dict[str, dict[str, list[float]]] = {n: {"life": [], "decide": []} for n in conns}
        for r in range(args.rounds):
            for name, conn in conns.items():
                results[name]["life"].append(timed(conn, lifecycle, f"l{r}", args.calls))
                results[name]["decide"].append(timed(conn, decide_only, f"d{r}", args.calls))
        base = statistics.median(results["unpartitioned"]["life"]) if results else 0.0
        if results:
            print(f"\ninsert cost, {args.rounds} rounds x {args.calls} calls, median µs per call:")
        for name, res in results.items():
            life = statistics.median(res["life"])
            print(
                f"  {name:15s} lifecycle {life:7.0f} ({life / base:.2f}x)"
                f"   insert_decision {statistics.median(res['decide']):7.0f}"
            )
        for conn in conns.values():
            conn.close()

        print(f"\nreport cost on {rows} outcomes over 24 months:", flush=True)
        for k, pairs in enumerate((0, 24)):
            db = f"pr{k}"
            cluster.create_database(db)
            sqitch_deploy(cluster.conninfo(db), project)
            with psycopg.connect(cluster.conninfo(db), autocommit=True) as conn:
                seed(conn)
                if pairs:
                    partition(conn, pairs)  # 24 months back, this month and the next
                seconds = load_history(conn, rows, days=725)
                ms = report_ms(conn, 5)
                label = f"{pairs + 2} partitions" if pairs else "unpartitioned"
                print(
                    f"  {label:15s} integrity_report {ms:8.1f} ms (loaded in {seconds:.0f} s)",
                    flush=True,
                )
            cluster.drop_database(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
