"""The non-streamed lifecycle on v0.1.0, v0.2.0, v0.2.1 and the checkout, in one run (issue 8).

Not part of ``make test``: ``make bench-lifecycle`` starts its own throwaway cluster and
deploys this repository's Sqitch plan four times: ``--to @v0.1.0``, ``@v0.2.0``, ``@v0.2.1``
(the released scripts, kept as ``<change>@<tag>.sql`` by every rework) and in full
(``head``). Each gets the same catalog and agents. Then, in interleaved rounds (the order
flips each round, so drift on a shared machine falls on all), it times what a v0.1 caller
does, with the v0.1 statements unchanged on every database:

* ``call``: insert_decision + complete_decision (two autocommit statements);
* ``capped``: the same for an agent with a daily cap (the cap is never reached);
* ``failover``: insert_decision, fail_inference('server_error'), complete_decision of
  the next attempt.

for a small catalog (3 models, the client bench's) and a larger one (20, the demo's).
It prints each database's median per lifecycle and its ratio to v0.1.0 (the median of the
per-round ratios, with their quartiles) twice: wall clock at the client, and the server's
time inside the write-path functions (``track_functions``; flushed around each block), which
the client, the protocol and the scheduler's noise do not blur. fsync is off: these are the
functions' CPU and round-trip costs, which is what the plans differ in. ``--try FILE.sql``
adds a copy of head with that SQL applied (a candidate change, timed in the same rounds).

Before timing, each database's ledger is seeded with ``--seed`` lifecycles (2,000; through
the same functions, server-side) and then ``VACUUM ANALYZE``d, as a production ledger is: the
statements' cached plans are then the index lookups a gateway's ledger gets. Without it the
statistics say "empty", every cached plan (the request-key probe, the foreign-key checks)
scans the benchmark's own growing table until autovacuum analyses it, and that scan costs
in proportion to the row's width: a wider outcome row read as a slower write path.

    .venv/bin/python tests/bench/lifecycle_bench.py [--rounds 30] [--reps 60] [--models 3,20]
        [--seed 2000] [--try FILE.sql]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy

TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000d0")
AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000d1")
CAPPED = uuid.UUID("00000000-0000-4000-8000-0000000000d2")

SMALL = """
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('c-small', 'local', 'small', 0.2, 0.6, 0.75, true),
       ('c-mini',  'local', 'mini',  0.15, 0.6, 0.80, true),
       ('c-large', 'local', 'large', 2.0, 6.0, 0.90, true)
"""
LARGE = """
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
SELECT 'm' || lpad(g::text, 4, '0'), 'local', 'm' || g, 0.1 + g * 0.01, 0.3 + g * 0.02,
       0.6 + mod(g, 40) / 100.0, true
  FROM generate_series(0, %s - 1) g
"""
# A realistic ledger before the statistics are taken (see the module's docstring): n calls of
# the uncapped agent through the v0.1 signatures every plan has.
SEED = """
DO $$
DECLARE r record;
BEGIN
    FOR k IN 1..%s LOOP
        SELECT * INTO r FROM routing.insert_decision('seed-' || k, '%s'::uuid, 'general', 12, 64,
                                                     '{}'::jsonb);
        PERFORM routing.complete_decision(r.inference_id, '{}'::jsonb, 12, 3, 5);
    END LOOP;
END $$
"""
AGENTS = """
INSERT INTO routing.agents (id, tenant_id, name, daily_cap_usd)
VALUES (%(agent)s, %(tenant)s, 'bench', NULL), (%(capped)s, %(tenant)s, 'capped', 1000000)
"""

# The v0.1 caller's statements, as its client sent them; the same text on both plans.
INSERT = (
    "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, 'general', 12::int, 64::int,"
    " '{}'::jsonb)"
)
COMPLETE = (
    "SELECT * FROM routing.complete_decision(%s::bigint, '{}'::jsonb, 12::int, 3::int, 5::int)"
)
FAIL = (
    "SELECT * FROM routing.fail_inference(%s::bigint, 'server_error'::text, 'bench'::text,"
    " 503::int, NULL::int)"
)

PATHS = ("call", "capped", "failover")
_ids = itertools.count()


def lifecycle(conn: psycopg.Connection[Any], path: str) -> None:
    agent = CAPPED if path == "capped" else AGENT
    request = f"lb-{next(_ids)}"
    row = conn.execute(INSERT, (request, agent)).fetchone()
    assert row is not None and row[1] is not None, f"{path}: not routed: {row}"
    inference = row[1]
    if path == "failover":
        step = conn.execute(FAIL, (inference,)).fetchone()
        assert step is not None and step[0] == "failover", f"failover: {step}"
        inference = step[2]
    done = conn.execute(COMPLETE, (inference,)).fetchone()
    assert done is not None and done[1] == "succeeded", f"{path}: {done}"


def timed_ms(fn: Callable[[], None], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


# Time spent inside the write-path functions so far (ms, track_functions), after flushing this
# backend's pending statistics: the server's share of a lifecycle, without the client, the
# protocol and the scheduler's noise around them.
FLUSH = "SELECT pg_stat_force_next_flush()"
SERVER_MS = """
SELECT coalesce(sum(pg_stat_get_function_total_time(p.oid)), 0)::float8
  FROM pg_proc p
 WHERE p.pronamespace = 'routing'::regnamespace
   AND p.proname IN ('insert_decision', 'complete_decision', 'fail_inference')
"""


def server_ms(conn: psycopg.Connection[Any]) -> float:
    conn.execute(FLUSH)
    row = conn.execute(SERVER_MS).fetchone()
    assert row is not None
    return float(row[0])


def cpu_ms(conn: psycopg.Connection[Any]) -> float | None:
    """The backend's time on a CPU so far (ms; Linux's /proc/<pid>/schedstat, in ns), or None.

    Unlike the wall clock, it leaves out the time the backend waited for a CPU another
    process held, so a busy machine blurs it far less (caches and a shared core still do).
    """
    try:
        with open(f"/proc/{conn.info.backend_pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (30)")
    parser.add_argument("--reps", type=int, default=60, help="lifecycles per path per round (60)")
    parser.add_argument("--models", default="3,20", help="catalog sizes, comma-separated (3,20)")
    parser.add_argument(
        "--plans",
        default="v0.1.0,v0.2.0,v0.2.1",
        help="released tags beside head, the first the ratios' baseline (v0.1.0,v0.2.0,v0.2.1)",
    )
    parser.add_argument(
        "--track-functions",
        choices=("pl", "none"),
        default="pl",
        help="pl (default): also time the server inside the write-path functions; none: as a"
        " production server runs (track_functions costs a clock reading per function call)",
    )
    parser.add_argument(
        "--seed", type=int, default=2000, help="lifecycles in each ledger before ANALYZE (2000)"
    )
    parser.add_argument(
        "--try",
        dest="try_sql",
        type=Path,
        action="append",
        default=[],
        help="also time a copy of head with this SQL file applied (repeatable)",
    )
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.models.split(",")]
    project = find_project_dir()
    released = tuple(p for p in args.plans.split(",") if p)
    tracked = args.track_functions == "pl"
    plans = (*released, "head", *(f"try{k}" for k in range(len(args.try_sql))))

    with LocalCluster(settings={"track_functions": args.track_functions}) as cluster:
        conns: dict[tuple[int, str], psycopg.Connection[Any]] = {}
        for n, plan in itertools.product(sizes, plans):
            db = cluster.create_database(f"lb_{plan.replace('.', '')}_{n}")
            deploy = ("--to", f"@{plan}") if plan.startswith("v0.") else ()
            sqitch_deploy(cluster.conninfo(db), project, *deploy)
            with cluster.connect(db) as setup:
                setup.autocommit = True
                if plan.startswith("try"):
                    setup.execute(args.try_sql[int(plan[3:])].read_text())
                setup.execute(SMALL if n == 3 else LARGE % n)
                setup.execute(AGENTS, {"agent": AGENT, "capped": CAPPED, "tenant": TENANT})
                if args.seed:
                    setup.execute(SEED % (args.seed, AGENT))
                setup.execute("VACUUM ANALYZE")
            # The timed session starts after: its plans are made with the statistics just taken.
            conn = cluster.connect(db)
            conn.autocommit = True
            conn.execute("SET stats_fetch_consistency = none")
            for path in PATHS:  # warm the plan caches and the prepared statements
                timed_ms(lambda c=conn, p=path: lifecycle(c, p), 20)
            conns[n, plan] = conn

        times: dict[tuple[int, str], dict[str, list[float]]] = {
            key: {path: [] for path in PATHS} for key in conns
        }
        server: dict[tuple[int, str], dict[str, list[float]]] = {
            key: {path: [] for path in PATHS} for key in conns
        }
        cpu: dict[tuple[int, str], dict[str, list[float]]] = {
            key: {path: [] for path in PATHS} for key in conns
        }
        for rnd in range(args.rounds):
            order = plans if rnd % 2 == 0 else plans[::-1]
            for n, path in itertools.product(sizes, PATHS):
                for plan in order:
                    conn = conns[n, plan]
                    before = server_ms(conn) if tracked else 0.0
                    cpu_before = cpu_ms(conn)
                    ms = timed_ms(lambda c=conn, p=path: lifecycle(c, p), args.reps)
                    times[n, plan][path].append(ms)
                    cpu_after = cpu_ms(conn)
                    if tracked:
                        server[n, plan][path].append((server_ms(conn) - before) / args.reps)
                    if cpu_before is not None and cpu_after is not None:
                        cpu[n, plan][path].append((cpu_after - cpu_before) / args.reps)

        version = conns[sizes[0], "head"].execute("SHOW server_version").fetchone()
        print(
            f"PostgreSQL {version[0] if version else '?'}; {args.rounds} rounds x "
            f"{args.reps} lifecycles per path and plan, fsync off, ledgers seeded with "
            f"{args.seed} calls"
        )
        for k, path_ in enumerate(args.try_sql):
            print(f"try{k}: head + {path_.name}")
        print(
            "ms: the median per lifecycle over the rounds; ratio: the median of the per-round"
            f" ratios to {plans[0]} (each round times the plans back to back), with their quartiles"
        )
        table("wall clock, client to client", times, sizes, plans)
        if tracked:
            table(
                "server: time inside the write-path functions (track_functions)",
                server,
                sizes,
                plans,
            )
        if all(cpu[key][path] for key in conns for path in PATHS):
            table("backend: its own CPU time (/proc/<pid>/schedstat)", cpu, sizes, plans)
    return 0


def table(
    title: str,
    figures: dict[tuple[int, str], dict[str, list[float]]],
    sizes: list[int],
    plans: tuple[str, ...],
) -> None:
    print(f"\n{title}")
    print(
        f"{'catalog':>8} {'path':<9} {plans[0]:>8}"
        + "".join(f" {plan:>8} {'ratio':>6} {'q1-q3':>10}" for plan in plans[1:])
    )
    for n, path in itertools.product(sizes, PATHS):
        old = figures[n, plans[0]][path]
        line = f"{n:>8} {path:<9} {statistics.median(old):>6.3f}ms"
        for plan in plans[1:]:
            new = figures[n, plan][path]
            ratios = [b / a for a, b in zip(old, new, strict=True)]
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios * 3)
            line += (
                f" {statistics.median(new):>6.3f}ms {statistics.median(ratios):>5.2f}x"
                f" {q1:>4.2f}-{q3:.2f}x"
            )
        print(line)


if __name__ == "__main__":
    sys.exit(main())
