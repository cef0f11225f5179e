"""The non-streamed lifecycle's cost in CPU instructions: v0.2.1 against the checkout.

Not part of ``make test``: ``make bench-instructions``. Wall-clock and server-time figures
(``make bench-lifecycle``) drift by tens of per cent on a shared machine, more than the
differences between two versions of a function. This counts instructions instead, which do
not depend on what else the machine is doing (they still differ between runs, by up to 10 %
for the same plan: each database's physical history; compare within one run, and repeat).

It deploys ``@v0.2.1`` and the checkout (and ``--try FILE.sql``: a copy of the checkout with
that SQL applied) into one throwaway cluster, gives each the lifecycle bench's catalog and
agents, and stops the cluster. Then, for each database and path, it runs a single-user
backend (``postgres --single``) under valgrind's callgrind twice, once for ``--warm``
lifecycles and once for ``--warm + --n``, and prints the difference divided by ``--n``:
the instructions one lifecycle costs, with the backend's start, the functions' first
compilation and the route plan's first build left out. Each lifecycle is what a v0.1
caller does (lifecycle_bench.py's paths ``call``, ``capped``, ``failover``), from a
procedure that commits after each function, as a client's autocommit statements would.

The quality tick (half-life / 1024, 20 minutes at the default) bounds a route plan: a run
that crossed a tick boundary would pay for one rebuild. The checkout's databases get a
half-life long enough that no run does.

    .venv/bin/python tests/bench/lifecycle_instructions.py [--n 60] [--warm 10]
        [--models 3] [--paths call,capped,failover] [--seed 2000] [--try FILE.sql]
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lifecycle_bench as lb

from routing_ledger.testing.cluster import (
    LocalCluster,
    find_project_dir,
    sqitch_deploy,
)

PROCEDURE = """
CREATE OR REPLACE PROCEDURE public.bench_lifecycles(p_n int, p_path text)
LANGUAGE plpgsql AS $bench$
DECLARE
    d record;
    f record;
    a uuid := CASE WHEN p_path = 'capped' THEN 'CAPPED_AGENT'::uuid ELSE 'BENCH_AGENT'::uuid END;
BEGIN
    FOR k IN 1 .. p_n LOOP
        SELECT * INTO d
          FROM routing.insert_decision(p_path || k || '-' || clock_timestamp()::text, a,
                                       'general', 12, 64, '{}'::jsonb);
        COMMIT;
        IF p_path = 'failover' THEN
            SELECT * INTO f
              FROM routing.fail_inference(d.inference_id, 'server_error', 'bench', 503, NULL::int);
            COMMIT;
            PERFORM routing.complete_decision(f.next_inference_id, '{}'::jsonb, 12, 3, 5);
        ELSE
            PERFORM routing.complete_decision(d.inference_id, '{}'::jsonb, 12, 3, 5);
        END IF;
        COMMIT;
    END LOOP;
END
$bench$;
"""

LONG_TICK = """
DO $tick$
BEGIN
    IF EXISTS (SELECT FROM information_schema.columns
                WHERE table_schema = 'routing' AND table_name = 'settings'
                  AND column_name = 'quality_half_life') THEN
        EXECUTE 'UPDATE routing.settings SET quality_half_life = ''10000 days''';
    END IF;
END
$tick$;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="lifecycles counted per run (60)")
    parser.add_argument("--warm", type=int, default=10, help="lifecycles left out (10)")
    parser.add_argument("--models", type=int, default=3, help="catalog size (3)")
    parser.add_argument("--paths", default="call,capped,failover")
    parser.add_argument("--seed", type=int, default=2000, help="ledger history (2000 calls)")
    parser.add_argument("--try", dest="try_sql", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print(
            "make bench-instructions needs valgrind (Debian: apt-get install valgrind)",
            file=sys.stderr,
        )
        return 2
    project = find_project_dir(Path.cwd())
    plans = ["v0.2.1", "head", *(f"try{k}" for k in range(len(args.try_sql)))]
    procedure = PROCEDURE.replace("CAPPED_AGENT", str(lb.CAPPED)).replace(
        "BENCH_AGENT", str(lb.AGENT)
    )

    cluster = LocalCluster(keep_dir=True).start()
    try:
        for plan in plans:
            db = "bi_" + plan.replace(".", "")
            cluster.create_database(db)
            sqitch_deploy(
                cluster.conninfo(db),
                project,
                *(("--to", "@" + plan) if plan.startswith("v0.") else ()),
            )
            with cluster.connect(db) as conn:
                conn.autocommit = True
                if plan.startswith("try"):
                    conn.execute(args.try_sql[int(plan[3:])].read_text())
                conn.execute(lb.SMALL if args.models == 3 else lb.LARGE % args.models)
                conn.execute(
                    lb.AGENTS,
                    {"agent": lb.AGENT, "capped": lb.CAPPED, "tenant": lb.TENANT},
                )
                conn.execute(procedure)
                conn.execute(LONG_TICK)
                # A ledger with history, and its statistics: generic plans built on a small
                # table's estimates scan it (lifecycle_bench.py's SEED) where a live
                # ledger's use its indexes.
                conn.execute(lb.SEED % (args.seed, lb.AGENT))
                for path in args.paths.split(","):
                    conn.execute("CALL public.bench_lifecycles(20, %s)", (path,))
                conn.execute("VACUUM ANALYZE")
                conn.execute("CHECKPOINT")
        cluster.stop()
        assert cluster.data_dir is not None
        run = _runner(valgrind, cluster.bindir, cluster.data_dir)
        for k, path_ in enumerate(args.try_sql):
            print(f"try{k}: head + {path_.name}")
        print(
            f"instructions per lifecycle (callgrind; {args.n} lifecycles after {args.warm}; "
            f"{args.models}-model catalog); ratio to v0.2.1"
        )
        print(f"{'path':<9}" + "".join(f"{plan:>22}" for plan in plans))
        for path in args.paths.split(","):
            line = f"{path:<9}"
            base = None
            for plan in plans:
                db = "bi_" + plan.replace(".", "")
                warm = run(db, args.warm, path)
                per = (run(db, args.warm + args.n, path) - warm) / args.n
                base = base or per
                line += f"{per / 1e3:>13.1f}k {per / base:>6.3f}x"
            print(line, flush=True)
    finally:
        if cluster.running:
            cluster.stop()
        if cluster.base_dir is not None:
            shutil.rmtree(cluster.base_dir, ignore_errors=True)
    return 0


def _runner(valgrind: str, bindir: Path, data_dir: Path) -> Callable[[str, int, str], int]:
    """A function running n lifecycles in a single-user backend; returns its instructions."""
    demote = None
    if os.geteuid() == 0:  # the server refuses root: run it as the cluster's owner
        owner = pwd.getpwuid(data_dir.stat().st_uid)

        def demote() -> None:
            os.setgid(owner.pw_gid)
            os.setuid(owner.pw_uid)

    def run(db: str, n: int, path: str) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o777)
            out = Path(tmp) / "callgrind.out"
            proc = subprocess.run(
                [
                    valgrind,
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    "--dump-instr=no",
                    str(bindir / "postgres"),
                    "--single",
                    "-D",
                    str(data_dir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "jit=off",
                    db,
                ],
                input=f"CALL public.bench_lifecycles({n}, '{path}');\n",
                capture_output=True,
                text=True,
                preexec_fn=demote,
                cwd=tmp,
                check=False,
            )
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or found is None or "ERROR" in proc.stdout:
            raise SystemExit(f"{db} {path}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        return int(found.group(1))

    return run


if __name__ == "__main__":
    sys.exit(main())
