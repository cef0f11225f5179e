"""What one request costs the database on each write path, serially (not part of `make test`).

    .venv/bin/python tests/bench/write_path_bench.py [--n 5000] [--warmup 200] [--durable]

Starts its own throwaway PostgreSQL (routing_ledger.testing.cluster.LocalCluster), deploys the
Sqitch plan into a template, and measures, on one connection each (the unix socket), the
per-request latency of the paths in tests/bench/paths.py: ``package`` (insert_decision +
complete_decision), ``floor`` (the same row writes as two plain statements), ``bare_tx``
(the same writes in two explicit transactions, six round trips) and ``legacy`` (the old
six-statement path: its catalog read, then five writes with the back-fill, on a database
with the old constraint).

Latency is per request (both phases, no provider call in between). By default the cluster
runs with fsync off, so these are CPU and round-trip costs; ``--durable`` turns fsync,
synchronous_commit and full_page_writes on (then every commit waits for the disk). The
suite (tests/bench/suite.py, ``make bench``) measures the same paths concurrently and as
ratios; this script is the quick serial view.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from paths import CATALOG, LEGACY_CONSTRAINT, PATHS, Workload

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy

WHAT = {
    "package": "insert_decision + complete_decision (2 round trips)",
    "floor": "the same row writes, 2 plain autocommit statements",
    "bare_tx": "the same row writes, 2 x (BEGIN, 2 statements, COMMIT)",
    "legacy": "old path: catalog read + 5 autocommit writes incl. back-fill",
}


def measure(one: Callable[[str], None], name: str, n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        one(f"{name}-warm-{i}")
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        one(f"{name}-{i}")
        latencies.append(time.perf_counter() - started)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="requests per path (5000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests (200)")
    parser.add_argument("--durable", action="store_true", help="fsync on (default off)")
    args = parser.parse_args(argv)

    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    results: dict[str, list[float]] = {}
    project = find_project_dir(Path(__file__).resolve().parent)
    with LocalCluster(settings=durable if args.durable else None) as cluster:
        cluster.create_database("bench_template")
        sqitch_deploy(cluster.conninfo("bench_template"), project)
        with cluster.connect("bench_template") as conn:
            conn.execute(CATALOG.encode())
        # What the package writes for the request, read from a probe outside the template.
        cluster.create_database("bench_probe", template="bench_template")
        with cluster.connect("bench_probe") as conn:
            workload = Workload.decided(conn)
        for name in WHAT:
            db = cluster.create_database(f"bench_{name}", template="bench_template")
            with cluster.connect(db) as conn:
                if name == "legacy":
                    conn.execute(LEGACY_CONSTRAINT.encode())
                print(f"{name}: {args.n} requests …", file=sys.stderr, flush=True)
                one = PATHS[name](conn, workload)
                results[name] = measure(one, name, args.n, args.warmup)

    print(f"\nfsync {'on' if args.durable else 'off'}")
    print(f"{'path':<9} {'requests/s':>11} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}  what")
    for name, latencies in results.items():
        mean = statistics.fmean(latencies)
        print(
            f"{name:<9} {1 / mean:>11.0f} {mean * 1e3:>8.3f} "
            f"{percentile(latencies, 0.50) * 1e3:>8.3f} {percentile(latencies, 0.99) * 1e3:>8.3f}"
            f"  {WHAT[name]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
