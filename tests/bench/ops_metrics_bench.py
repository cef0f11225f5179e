"""How long a metrics scrape (routing.ops_metrics) takes on a large ledger.

Not part of ``make test``: it starts its own throwaway cluster, deploys the plan, loads
``--rows`` outcomes shaped like production (integrity_report_bench.load: one request every
30 s, so a million outcomes span about a year), and prints the wall time of ops_metrics for
windows of 5 minutes, 1 hour and 1 day, with the rows each window holds. The window's
rows, not the ledger's, should set the cost of the write-path figures; the integrity report
inside it costs what its anomalies cost (timed alone first).

    .venv/bin/python tests/bench/ops_metrics_bench.py [--rows 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from integrity_report_bench import load  # noqa: E402

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy  # noqa: E402

WINDOWS = ("5 minutes", "1 hour", "1 day")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="outcomes (1,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per window (5)")
    args = parser.parse_args(argv)
    project = find_project_dir(Path(__file__).resolve().parent)
    with LocalCluster(settings={"shared_buffers": "256MB", "max_wal_size": "4GB"}) as cluster:
        cluster.create_database("bench")
        sqitch_deploy(cluster.conninfo("bench"), project)
        with psycopg.connect(cluster.conninfo("bench"), autocommit=True) as conn:
            print(f"loaded {args.rows:,} outcomes in {load(conn, args.rows):.0f} s", flush=True)
            report = []
            for _ in range(args.runs + 1):
                t0 = time.perf_counter()
                conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
                report.append((time.perf_counter() - t0) * 1000)
            print(f"integrity_report() alone (part of every scrape): median "
                  f"{statistics.median(report[1:]):.1f} ms")  # fmt: skip
            for window in WINDOWS:
                held = conn.execute(
                    "SELECT count(*) FROM routing.routing_outcomes"
                    " WHERE created_at > now() - %s::interval",
                    (window,),
                ).fetchone()
                conn.execute("SELECT * FROM routing.ops_metrics(%s::interval)", (window,))
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    conn.execute(
                        "SELECT * FROM routing.ops_metrics(%s::interval)", (window,)
                    ).fetchall()
                    times.append((time.perf_counter() - t0) * 1000)
                print(
                    f"ops_metrics({window!r}): {held[0] if held else '?':>6} outcomes in the"
                    f" window; median {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
