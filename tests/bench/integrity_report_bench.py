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
last 200 requests in flight (tests/bench/ledger_load.py's PROPORTIONAL shape; the load
drops the secondary indexes and rebuilds them afterwards). The suite (``make bench``) times
the report on a fixed set of anomalies with and without history instead (its P6); this
script is the detailed view, with the plan.

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
from ledger_load import PROPORTIONAL, load
from paths import CATALOG

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy

PROPOSED_INDEX = (
    "CREATE INDEX IF NOT EXISTS routing_outcomes_succeeded_unjudged ON routing.routing_outcomes "
    "(id)"
    " WHERE outcome_status = 'succeeded' AND judge_status IS NULL"
)


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
            conn.execute(CATALOG.encode())
            seconds = load(conn, args.rows, PROPORTIONAL)
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
