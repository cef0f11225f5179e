"""What the client's non-streamed lifecycle costs, end to end (not part of `make test`).

    python tests/bench/client_bench.py [--n 3000] [--src DIR] [--project DIR]

Starts its own throwaway PostgreSQL, deploys the Sqitch plan of ``--project`` (default: this
repository), and times ``Ledger.call`` — insert_decision, an in-process provider that
answers at once (no HTTP, so the figure is the client plus the database), complete_decision
— serially, for the client found under ``--src`` (default: this repository's
``python_client/src``). Point both at an export of another commit to compare releases in
one run, e.g. ``git archive <v0.1 commit> | tar -x -C /tmp/v01``, then
``--src /tmp/v01/python_client/src --project /tmp/v01``.

Modes: ``owned`` is a pool the ledger creates (v0.2: autocommit, no server-side prepared
statements — what works behind PgBouncer); ``prepared`` is a caller pool with psycopg's
default ``prepare_threshold=5`` (the opt-in for direct connections). fsync is off: these are
CPU and round-trip costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000c2")
CATALOG = f"""
INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd,
                            price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('c-small', 'local', 'small', 0.2, 0.6, 0.75, true),
       ('c-mini',  'local', 'mini',  0.15, 0.6, 0.80, true),
       ('c-large', 'local', 'large', 2.0, 6.0, 0.90, true);
INSERT INTO routing.agents (id, tenant_id, name) VALUES ('{AGENT}', '{TENANT}', 'bench');
"""
MESSAGES = [{"role": "user", "content": "benchmark request"}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="calls per mode (3000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls (200)")
    parser.add_argument("--src", type=Path, default=ROOT / "python_client" / "src")
    parser.add_argument("--project", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.src.resolve()))

    from psycopg_pool import ConnectionPool

    from routing_ledger.ledger import Ledger
    from routing_ledger.providers import ProviderResponse
    from routing_ledger.testing.cluster import LocalCluster, sqitch

    class Instant:
        payload = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        }

        def complete(self, model: str, messages: Any, max_tokens: int, **options: Any) -> Any:
            return ProviderResponse("ok", 12, 3, 1, self.payload, 200)

    providers = {"local": Instant()}
    with LocalCluster() as cluster:
        cluster.create_database("bench")
        sqitch(cluster, "bench", "deploy", project_dir=args.project.resolve())
        with cluster.connect("bench") as conn:
            conn.execute(CATALOG)
        db = cluster.conninfo("bench")
        prepared = ConnectionPool(
            db, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
        )
        ledgers = {
            "owned": Ledger(db, providers, min_size=1, max_size=1),
            "prepared": Ledger(prepared, providers),
        }
        results: dict[str, list[float]] = {name: [] for name in ledgers}
        # Modes alternate in rounds, so a busy machine's drift (and the ledger's growth)
        # falls on every mode alike.
        rounds = max(1, args.n // 200)
        for name, ledger in ledgers.items():
            for i in range(args.warmup):
                ledger.call(AGENT, "general", MESSAGES, 64, f"{name}-warm-{i}")
        for r in range(rounds):
            print(f"round {r + 1}/{rounds} …", file=sys.stderr, flush=True)
            for name, ledger in ledgers.items():
                for i in range(args.n // rounds):
                    started = time.perf_counter()
                    ledger.call(AGENT, "general", MESSAGES, 64, f"{name}-{r}-{i}")
                    results[name].append(time.perf_counter() - started)
        for ledger in ledgers.values():
            ledger.close()
        prepared.close()

    print(f"\nclient: {args.src}\n")
    print(f"{'mode':<9} {'calls/s':>8} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, latencies in results.items():
        ordered = sorted(latencies)
        mean = statistics.fmean(latencies)
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(f"{name:<9} {1 / mean:>8.0f} {mean * 1e3:>8.3f} {p50 * 1e3:>8.3f} {p99 * 1e3:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
