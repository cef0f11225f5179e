"""routing-ledger's benchmark suite: issue 12's goals P1–P6 as ratios measured in one run.

    make bench                          # the default sizes, ≲ 10 minutes on 2 cores
    make bench BENCH_ARGS=--quick       # a smoke run, ~1–2 minutes
    make bench BENCH_ARGS=--big         # P6 at 10 M outcomes (loading takes many minutes)
    .venv/bin/python tests/bench/suite.py --help

It starts its own throwaway PostgreSQL (routing_ledger.testing.cluster.LocalCluster) **with
durability on** (fsync, synchronous_commit, full_page_writes: every commit waits for the
disk, as in production), deploys the Sqitch plan as it is in this checkout into a template,
and clones one database per section from it, so it measures whatever the plan deploys.
Every figure is a ratio of two measurements taken in the same run, interleaved where they
share the machine, so a busy machine slows both sides alike. Clients connect over TCP
to 127.0.0.1 (the loopback), each its own process and connection (tests/bench/clients.py).

  P1  lifecycle (insert_decision + complete_decision) throughput / the bare-SQL floor (the same
      row writes as two plain statements), at 1, 4 and 8 clients.        goal ≥ 0.8×
  P2  lifecycle throughput / the old six-statement path (catalog read, then five writes), at
      1 and 8 clients, on the loopback and through a proxy adding 1 ms each way
      (tests/bench/delay_proxy.py).
                                                          goal ≥ 1.5× loopback, ≥ 2.5× 1 ms
  P3  choose_route latency over 1,000 enabled models / over 10 (it returns the full document,
      O(catalog) by contract); insert_decision latency (the router's decision as the write
      path runs it, no completion) over 1,000 models / over 10.           goal ≤ 3×
  P4  heap + TOAST bytes per outcome (outcome and attempt rows) at 1,000 models / at 20; and
      whether routing.explain_outcome exists and gives back what choose_route returned.
                                                           goal flat (≤ 1.2×), present
  P5  a capped agent's insert_decision latency / an uncapped one's, at 0 and at 500 k of the
      capped agent's outcomes today.                                      goal ≤ 1.2×
  P6  insert_decision, integrity_report and claim_judge_batch latency on a ledger of 1 M
      outcomes (10 M with --big) / on one with no history, both holding the same anomalies
      and the same 18 k judge queue.                                       goal ≤ 1.2×
  C   the Python client's Ledger.call latency / raw psycopg + httpx doing the same calls,
      against the loopback fault server (routing_ledger.testing).          (info; was +5 %)

Latency figures are medians; throughput is requests completed in a fixed window.
Exit status: 0 when every section ran (goals missed are reported, not failed), 1 when a
section raised (its row says so).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from clients import ClientPool
from delay_proxy import DelayProxy
from ledger_load import HISTORY_THEN_LIVE, LIVE, LIVE_QUEUE, TODAY, load
from paths import (
    AGENT,
    CAPPED_AGENT,
    CATALOG,
    CHOOSE_ROUTE,
    COMPLETE_DECISION,
    INSERT_DECISION,
    LEGACY_CONSTRAINT,
    PATHS,
    Workload,
    catalog_of,
)
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from routing_ledger.testing.cluster import LocalCluster, find_project_dir, sqitch_deploy

DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
}


# Heap + TOAST bytes (and with indexes) of every table of schema routing (the leaves, if
# partitioned): what a lifecycle adds to them is what it stores, wherever the plan puts it
# (outcome and attempt rows, a shared snapshot table, a budget counter, ...).
SCHEMA_BYTES = """
SELECT coalesce(sum(pg_relation_size(c.oid)
                    + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)), 0),
       coalesce(sum(pg_total_relation_size(c.oid)), 0)
  FROM pg_class c
 WHERE c.relnamespace = 'routing'::regnamespace AND c.relkind = 'r'
"""
VACUUM_LEDGER = "VACUUM (ANALYZE) routing.routing_outcomes, routing.inferences"
# Today's budget rows set to what the ledger sums (after a load that bypassed the counter).
RESYNC_BUDGET = """
UPDATE routing.budget_spend b
   SET spent_usd = routing._derived_spend(b.agent_id, b.spend_day)
 WHERE b.spend_day = routing._spend_day(now())
"""


@dataclass(frozen=True)
class Sizes:
    cell_s: float  # seconds per throughput cell
    rounds: int  # interleaved rounds per throughput comparison
    route_calls: int  # choose_route calls per catalog size
    p4_lifecycles: int
    p5_stages: tuple[int, ...]
    p5_probes: int
    p6_rows: int
    p6_probes: int
    client_calls: int


QUICK = Sizes(0.5, 2, 12, 40, (0, 20_000), 30, 100_000, 20, 150)
DEFAULT = Sizes(1.5, 4, 45, 250, (0, 10_000, 100_000, 500_000), 100, 1_000_000, 60, 600)


@dataclass
class Row:
    key: str
    figure: str
    value: float | None
    goal: str
    ok: bool | None
    unit: str = "×"
    text: str | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    failed: bool = False

    def ratio(self, key: str, figure: str, value: float, goal: str, ok: bool | None) -> None:
        self.rows.append(Row(key, figure, value, goal, ok))

    def text(self, key: str, figure: str, text: str, goal: str, ok: bool | None) -> None:
        self.rows.append(Row(key, figure, None, goal, ok, text=text))

    def note(self, line: str) -> None:
        self.details.append(line)
        print(f"  {line}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def section(self, key: str, title: str) -> Iterator[None]:
        print(f"\n[{key}] {title} …", file=sys.stderr, flush=True)
        self.details.append(f"{key} — {title}")
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:  # a section that breaks is reported; the others still run
            self.failed = True
            traceback.print_exc()
            self.rows.append(Row(key, title, None, "", False, text=f"error: {exc!s:.60}"))
        finally:
            self.note(f"({time.perf_counter() - started:.0f} s)")

    def table(self) -> str:
        lines = [
            f"{'':<4} {'figure':<58} {'measured':>10}  {'goal':<12} {'':<4}",
            "-" * 92,
        ]
        for r in self.rows:
            shown = r.text if r.text is not None else f"{r.value:.2f}{r.unit}"
            verdict = {True: "ok", False: "MISS", None: ""}[r.ok]
            lines.append(f"{r.key:<4} {r.figure:<58} {shown:>10}  {r.goal:<12} {verdict:<4}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def ratio(a: list[float], b: list[float]) -> float:
    """The median of the per-round ratios a[i] / b[i]."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def spread(a: list[float], b: list[float]) -> str:
    """The per-round ratios, for the details (how much the rounds agree)."""
    return " ".join(f"{x / y:.2f}" for x, y in zip(a, b, strict=True))


def median_ms(fn: Callable[[], Any], *, n: int = 0, seconds: float = 0.0) -> float:
    """Median wall time of ``fn()`` over at least ``n`` calls and ``seconds`` (one warm-up)."""
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max(n, 3) or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def interleaved_ms(
    fns: dict[str, Callable[[int], Any]], n: int, block: int = 10
) -> dict[str, float]:
    """Median wall time of each ``fns[name](i)`` over ``n`` calls, run in alternating blocks."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # one warm-up call each
        fn(-1)
    i = 0
    while i < n:
        for name, fn in fns.items():
            for j in range(i, min(n, i + block)):
                t0 = time.perf_counter()
                fn(j)
                times[name].append(time.perf_counter() - t0)
        i += block
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


class Bench:
    def __init__(self, cluster: LocalCluster, sizes: Sizes, report: Report, pool: ClientPool):
        self.cluster = cluster
        self.sizes = sizes
        self.report = report
        self.pool = pool
        self._serial = 0

    def clone(self, name: str, *setup: str) -> str:
        self.cluster.create_database(name, template="bench_template")
        with self.cluster.connect(name) as conn:
            for script in setup:
                conn.execute(script.encode())
        return name

    def tcp(self, db: str, port: int | None = None) -> str:
        return make_conninfo(
            host="127.0.0.1",
            port=port or self.cluster.port,
            user=self.cluster.superuser,
            dbname=db,
        )

    def connect(self, db: str, port: int | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.tcp(db, port), autocommit=True)

    def tag(self, name: str) -> str:
        self._serial += 1
        return f"{name}{self._serial}"

    def throughput(
        self, cells: dict[str, tuple[str, str]], clients: int, workload: Workload
    ) -> dict[str, list[float]]:
        """Requests/s of each named (conninfo, path), one figure per round.

        Rounds alternate the order (A B C, then C B A, …) so neither side always runs
        first; short cells in many rounds spread a burst of load elsewhere on the machine
        over both sides. Compare two paths with :func:`ratio` (the median per-round ratio).
        """
        rates: dict[str, list[float]] = {k: [] for k in cells}
        order = list(cells)
        for r in range(self.sizes.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                conninfo, path = cells[name]
                cell = self.pool.run(
                    clients,
                    conninfo,
                    path,
                    workload,
                    self.tag(name),
                    duration_s=self.sizes.cell_s,
                )
                rates[name].append(cell.per_s)
        self.report.note(
            f"{clients} client(s): "
            + ", ".join(f"{k} {statistics.median(v):,.0f}/s" for k, v in rates.items())
            + f" (median of {self.sizes.rounds} rounds of {self.sizes.cell_s:g} s)"
        )
        return rates

    # ----------------------------------------------------------------------- P1, P2

    def p1_p2(self) -> None:
        pkg = self.clone("p1_package", CATALOG)
        old = self.clone("p1_legacy", CATALOG, LEGACY_CONSTRAINT)
        with self.connect(pkg) as conn:
            w = Workload.decided(conn)
        self.report.note(
            f"request: {w.task}, {w.tin} in / {w.max_tokens} max tokens → {w.slug} ({w.rule});"
            f" explanation {len(str(w.explanation))} chars"
        )
        p2: dict[int, float] = {}
        with self.report.section("P1", "lifecycle vs bare-SQL floor (and P2 loopback)"):
            for clients in (1, 4, 8):
                cells = {"package": (self.tcp(pkg), "package"), "floor": (self.tcp(pkg), "floor")}
                if clients in (1, 8):
                    cells["legacy"] = (self.tcp(old), "legacy")
                rates = self.throughput(cells, clients, w)
                r = ratio(rates["package"], rates["floor"])
                self.report.note(
                    f"package / floor by round: {spread(rates['package'], rates['floor'])}"
                )
                self.report.ratio(
                    "P1", f"lifecycle / bare floor, {clients} client(s)", r, "≥ 0.8×", r >= 0.8
                )
                if "legacy" in rates:
                    p2[clients] = ratio(rates["package"], rates["legacy"])
                    self.report.note(
                        f"package / old path by round: {spread(rates['package'], rates['legacy'])}"
                    )
        for clients, r in p2.items():
            self.report.ratio(
                "P2", f"lifecycle / old path, loopback, {clients} client(s)", r, "≥ 1.5×", r >= 1.5
            )
        with self.report.section("P2", "lifecycle vs old path through a 1 ms-each-way proxy"):
            self.pool.drop_connections()
            with DelayProxy(self.cluster.port, delay_ms=1.0) as proxy:
                with self.connect(pkg) as direct, self.connect(pkg, proxy.port) as delayed:
                    rtt_direct = median_ms(lambda: direct.execute("SELECT 1").fetchone(), n=300)
                    rtt_proxy = median_ms(lambda: delayed.execute("SELECT 1").fetchone(), n=300)
                self.report.note(
                    f"round trip of SELECT 1 (median): {rtt_direct:.3f} ms direct,"
                    f" {rtt_proxy:.3f} ms through the proxy (+{rtt_proxy - rtt_direct:.2f} ms"
                    " for the 2 × 1 ms asked; timers wake late by a fraction of a ms)"
                )
                self.report.rows.append(
                    Row(
                        "P2",
                        "  round trip added by the 1 ms proxy (SELECT 1, median)",
                        rtt_proxy - rtt_direct,
                        "2 ms",
                        None,
                        unit=" ms",
                    )
                )
                for clients in (1, 8):
                    cells = {
                        "package": (self.tcp(pkg, proxy.port), "package"),
                        "legacy": (self.tcp(old, proxy.port), "legacy"),
                    }
                    rates = self.throughput(cells, clients, w)
                    r = ratio(rates["package"], rates["legacy"])
                    self.report.note(
                        f"package / old path by round: {spread(rates['package'], rates['legacy'])}"
                    )
                    self.report.ratio(
                        "P2",
                        f"lifecycle / old path, +1 ms each way, {clients} client(s)",
                        r,
                        "≥ 2.5×",
                        r >= 2.5,
                    )
                self.pool.drop_connections()

    # ----------------------------------------------------------------------- P3, P4

    def p3_p4(self) -> None:
        dbs = {n: self.clone(f"p3_models_{n}", catalog_of(n)) for n in (10, 20, 100, 1000)}
        with self.report.section(
            "P3", "choose_route (10 / 100 / 1,000 models) and insert_decision (10 / 1,000)"
        ):
            args = (AGENT, "general", 12, 64)
            conns = {n: self.connect(dbs[n]) for n in (10, 100, 1000)}
            nojit = self.connect(dbs[1000])
            nojit.execute("SET jit = off")
            try:
                docs = {}
                for n, conn in conns.items():
                    docs[n] = conn.execute(CHOOSE_ROUTE, args).fetchone()[0]  # type: ignore[index]
                    seen = len(docs[n]["candidates"]) + len(docs[n]["dropped"])
                    assert seen == n, f"choose_route saw {seen} of {n} models"
                fns = {
                    str(n): (lambda i, c=c: c.execute(CHOOSE_ROUTE, args).fetchone())
                    for n, c in conns.items()
                }
                fns["1000, jit off"] = lambda i: nojit.execute(CHOOSE_ROUTE, args).fetchone()
                cost = interleaved_ms(fns, self.sizes.route_calls, block=3)
            finally:
                for c in (*conns.values(), nojit):
                    c.close()
            for n, doc in docs.items():
                self.report.note(
                    f"{n:>5} models: {cost[str(n)]:.2f} ms median ({len(doc['candidates'])}"
                    f" ranked, {len(doc['dropped'])} dropped)"
                )
            self.report.note(f" 1000 models with jit = off: {cost['1000, jit off']:.2f} ms")
            r = cost["1000"] / cost["10"]
            self.report.ratio("P3", "choose_route, 1,000 models / 10 models", r, "≤ 3×", r <= 3)

            # The hot path's own routing: insert_decision alone (the router's decision as the
            # write path runs it, outcome and first attempt written, no completion), each
            # probe on its own connection, kept open across calls as a gateway's is, in a
            # database of its own (the outcomes it leaves would change what P4 counts).
            conns = {
                n: self.connect(self.clone(f"p3_insert_{n}", catalog_of(n))) for n in (10, 1000)
            }
            try:
                t = self.tag("p3-")
                probes = {str(n): PATHS["insert_only"](c, Workload()) for n, c in conns.items()}
                ins = interleaved_ms(
                    {k: (lambda i, f=f, k=k: f(f"{t}-{k}-{i}")) for k, f in probes.items()},
                    self.sizes.route_calls,
                    block=3,
                )
            finally:
                for c in conns.values():
                    c.close()
            self.report.note(
                f"insert_decision (no completion): {ins['10']:.2f} ms over 10 models,"
                f" {ins['1000']:.2f} ms over 1,000"
            )
            r = ins["1000"] / ins["10"]
            self.report.ratio(
                "P3", "insert_decision (write path), 1,000 models / 10", r, "≤ 3×", r <= 3
            )

        with self.report.section("P4", "bytes stored per outcome at 20 and 1,000 models"):
            per: dict[int, float] = {}
            sample: dict[int, int] = {}
            for n in (20, 1000):
                with self.connect(dbs[n]) as conn:
                    w = Workload.decided(conn)
                    one = PATHS["package"](conn, w)
                    conn.execute(VACUUM_LEDGER)
                    before = conn.execute(SCHEMA_BYTES).fetchone()
                    t0 = time.perf_counter()
                    for i in range(self.sizes.p4_lifecycles):
                        one(f"p4-{n}-{i}")
                    lifecycle_ms = (time.perf_counter() - t0) * 1e3 / self.sizes.p4_lifecycles
                    conn.execute(VACUUM_LEDGER)
                    after = conn.execute(SCHEMA_BYTES).fetchone()
                    row = conn.execute(
                        """
                        SELECT (SELECT avg(pg_column_size(explanation))
                                  FROM routing.routing_outcomes),
                               (SELECT avg(octet_length(explanation::text))
                                  FROM routing.routing_outcomes),
                               (SELECT max(id) FROM routing.routing_outcomes)
                        """
                    ).fetchone()
                    assert row is not None and before is not None and after is not None
                    expl_disk, expl_text, sample[n] = row
                    count = self.sizes.p4_lifecycles
                    per[n] = (after[0] - before[0]) / count
                    total = after[1] - before[1]
                    self.report.note(
                        f"{n:>5} models: {per[n]:,.0f} B/outcome heap+TOAST"
                        f" ({total / count:,.0f} B with indexes) over {count} lifecycles;"
                        f" explanation {float(expl_disk):,.0f} B stored,"
                        f" {float(expl_text):,.0f} B as text; lifecycle {lifecycle_ms:.2f} ms"
                    )
            r = per[1000] / per[20]
            self.report.ratio(
                "P4", "bytes per outcome, 1,000 models / 20 models", r, "≤ 1.2×", r <= 1.2
            )
            with self.connect(dbs[1000]) as conn:
                present = conn.execute(
                    "SELECT to_regprocedure('routing.explain_outcome(bigint)') IS NOT NULL"
                ).fetchone() == (True,)
                if not present:
                    verdict, ok = "missing", False
                else:
                    # What the router returned at decision time: choose_route as of then.
                    row = conn.execute(
                        "SELECT routing.explain_outcome(o.id), o.created_at"
                        "  FROM routing.routing_outcomes o WHERE o.id = %s",
                        (sample[1000],),
                    ).fetchone()
                    assert row is not None
                    full, created = row
                    as_of = (full or {}).get("as_of") or created
                    then = conn.execute(
                        "SELECT routing.choose_route(%s::uuid, %s::text, %s::int, %s::int,"
                        " %s::timestamptz)",
                        (AGENT, "general", 12, 64, as_of),
                    ).fetchone()
                    same = then is not None and full == then[0]
                    verdict, ok = ("present" if same else "differs"), same
            self.report.text(
                "P4",
                "routing.explain_outcome(id) = choose_route's document",
                verdict,
                "present",
                ok,
            )

    # ----------------------------------------------------------------------- P5

    def p5(self) -> None:
        db = self.clone("p5_budget", CATALOG)
        with (
            self.report.section("P5", "capped vs uncapped insert_decision by outcomes today"),
            self.connect(db) as conn,
            self.connect(db) as nojit,
        ):
            nojit.execute("SET jit = off")
            scheduled = conn.execute(
                "SELECT to_regprocedure('routing.check_budget_drift(timestamptz)') IS NOT NULL"
            ).fetchone() == (True,)
            exact_sql, exact_name = (
                ("SELECT routing.check_budget_drift()", "its scheduled check_budget_drift")
                if scheduled
                else ("SELECT routing._budget_drift(now())", "of which budget_spend_drift")
            )
            capped = PATHS["insert_only"](conn, Workload(agent=str(CAPPED_AGENT)))
            uncapped = PATHS["insert_only"](conn, Workload())
            loaded = 0
            reports: dict[int, float] = {}
            for stage in self.sizes.p5_stages:
                if stage > loaded:
                    secs = load(conn, stage - loaded, TODAY, agent=str(CAPPED_AGENT))
                    self.report.note(f"loaded {stage - loaded:,} outcomes today in {secs:.0f} s")
                    loaded = stage
                    # The load wrote the table directly, around the budget counter; had the
                    # outcomes gone through the write path it would hold their sum.
                    conn.execute(RESYNC_BUDGET)
                t = self.tag("p5-")
                ms = interleaved_ms(
                    {
                        "capped": lambda i, t=t: capped(f"{t}-c{i}"),
                        "uncapped": lambda i, t=t: uncapped(f"{t}-u{i}"),
                    },
                    self.sizes.p5_probes,
                )
                r = ms["capped"] / ms["uncapped"]
                self.report.note(
                    f"{stage:>9,} prior outcomes today: capped {ms['capped']:.2f} ms,"
                    f" uncapped {ms['uncapped']:.2f} ms ({r:.2f}×)"
                )
                if stage in (0, self.sizes.p5_stages[-1]):
                    self.report.ratio(
                        "P5",
                        f"capped / uncapped insert_decision, {stage:,} today",
                        r,
                        "≤ 1.2×",
                        r <= 1.2,
                    )
                # budget_spend_drift's exact answer re-derives the day of every agent with a
                # budget row (the capped agent's here) from the ledger. Where the plan has
                # routing.check_budget_drift, that runs on the maintenance schedule (once here,
                # as the schedule would have, before the report reads its record) and is timed
                # apart; otherwise the report re-derives the day itself. (On a session with
                # jit off, as the report runs it: with jit on the sum over a big day would be
                # compiled on every call.)
                if exact_sql.startswith("SELECT routing.check_budget_drift"):
                    nojit.execute(exact_sql)
                drift = nojit.execute(exact_sql).fetchone()
                ms = interleaved_ms(
                    {
                        "report": lambda i: conn.execute(
                            "SELECT * FROM routing.integrity_report()"
                        ).fetchall(),
                        "exact": lambda i: nojit.execute(exact_sql).fetchone(),
                    },
                    max(self.sizes.p5_probes // 5, 6),
                    block=2,
                )
                reports[stage] = ms["report"]
                self.report.note(
                    f"{stage:>9,} today: integrity_report {ms['report']:.2f} ms;"
                    f" {exact_name} {ms['exact']:.2f} ms (drift {drift[0] if drift else '?'})"
                )
            last = self.sizes.p5_stages[-1]
            r = reports[last] / reports[self.sizes.p5_stages[0]]
            self.report.ratio(
                "P5",
                f"integrity_report, capped agent {last:,} today / 0 (budget drift)",
                r,
                "(info)",
                None,
            )

    # ----------------------------------------------------------------------- P6

    def p6(self) -> None:
        rows = self.sizes.p6_rows
        with self.report.section("P6", f"the hot calls on an empty ledger vs {rows:,} outcomes"):
            small = self.clone("p6_small", CATALOG)
            big = self.clone("p6_big", CATALOG)
            with self.connect(small) as conn:
                load(conn, LIVE, HISTORY_THEN_LIVE)
            with self.connect(big) as conn:
                secs = load(conn, rows + LIVE, HISTORY_THEN_LIVE)
                self.report.note(f"loaded {rows + LIVE:,} outcomes in {secs:.0f} s")
                size = conn.execute(
                    "SELECT pg_size_pretty(pg_database_size(current_database()))"
                ).fetchone()
                self.report.note(f"the big ledger's database: {size[0] if size else '?'}")
            with self.connect(small) as s, self.connect(big) as b:
                for conn, label in ((s, "small"), (b, "big")):
                    q = conn.execute("SELECT count(*) FROM routing.judge_queue").fetchone()
                    report = dict(
                        conn.execute("SELECT * FROM routing.integrity_report()").fetchall()
                    )
                    self.report.note(
                        f"{label}: judge queue {q[0] if q else '?'}, orphan_outcomes"
                        f" {report.get('orphan_outcomes')}, stuck_routed_1h"
                        f" {report.get('stuck_routed_1h')}, in_flight {report.get('in_flight')}"
                    )
                ins = {
                    "small": PATHS["insert_only"](s, Workload()),
                    "big": PATHS["insert_only"](b, Workload()),
                }
                t = self.tag("p6-")
                probes = {
                    "insert_decision": {
                        k: (lambda i, f=f, k=k: f(f"{t}-{k}-{i}")) for k, f in ins.items()
                    },
                    "integrity_report": {
                        k: (
                            lambda i, c=c: c.execute(
                                "SELECT * FROM routing.integrity_report()"
                            ).fetchall()
                        )
                        for k, c in (("small", s), ("big", b))
                    },
                    "claim_judge_batch(10)": {
                        k: (
                            lambda i, c=c: c.execute(
                                "SELECT * FROM routing.claim_judge_batch(%s::text, %s::int)",
                                ("bench-judge", 10),
                            ).fetchall()
                        )
                        for k, c in (("small", s), ("big", b))
                    },
                }
                n = min(self.sizes.p6_probes, LIVE_QUEUE // 10 // 2)
                for name, fns in probes.items():
                    ms = interleaved_ms(fns, n, block=5)
                    r = ms["big"] / ms["small"]
                    self.report.note(
                        f"{name}: {ms['small']:.2f} ms empty, {ms['big']:.2f} ms at {rows:,}"
                    )
                    self.report.ratio(
                        "P6", f"{name}, {rows / 1e6:g} M outcomes / empty", r, "≤ 1.2×", r <= 1.2
                    )

    # ----------------------------------------------------------------------- client

    def client_overhead(self) -> None:
        import httpx

        from routing_ledger import Ledger
        from routing_ledger.providers import OpenAICompatibleProvider
        from routing_ledger.testing import FaultInjectingProvider

        db = self.clone("c_client", CATALOG)
        with (
            self.report.section("C", "Ledger.call vs raw psycopg + httpx, loopback fault server"),
            FaultInjectingProvider() as fault,
        ):
            provider = OpenAICompatibleProvider(base_url=fault.base_url)
            providers = {"mistral": provider, "openai": provider, "other": provider}
            messages = [{"role": "user", "content": "benchmark request"}]
            with (
                Ledger(self.tcp(db), providers) as ledger,
                self.connect(db) as conn,
                httpx.Client() as http,
            ):
                url = f"{fault.base_url}/chat/completions"

                def raw(i: int) -> None:
                    row = conn.execute(
                        INSERT_DECISION,
                        (
                            f"raw-{i}-{time.monotonic_ns()}",
                            AGENT,
                            "general",
                            4,
                            64,
                            Jsonb({"messages": messages, "max_tokens": 64}),
                        ),
                    ).fetchone()
                    assert row is not None
                    t0 = time.perf_counter()
                    resp = http.post(
                        url, json={"model": row[5], "messages": messages, "max_tokens": 64}
                    )
                    resp.raise_for_status()
                    body = resp.json()
                    usage = body.get("usage") or {}
                    conn.execute(
                        COMPLETE_DECISION,
                        (
                            row[1],
                            Jsonb(body),
                            usage.get("prompt_tokens", 4),
                            usage.get("completion_tokens", 1),
                            int((time.perf_counter() - t0) * 1e3),
                        ),
                    ).fetchone()

                def client(i: int) -> None:
                    result = ledger.call(AGENT, "general", messages, 64)
                    assert result.outcome_status == "succeeded"

                ms = interleaved_ms({"raw": raw, "ledger": client}, self.sizes.client_calls)
                r = ms["ledger"] / ms["raw"]
                self.report.note(
                    f"per call: Ledger.call {ms['ledger']:.2f} ms, raw {ms['raw']:.2f} ms"
                    f" (+{(r - 1) * 100:.0f} %)"
                )
                self.report.ratio(
                    "C", "Ledger.call / raw psycopg + httpx (latency)", r, "info", None
                )


def plan_description(project: Path) -> str:
    """The checkout's commit and the plan's last change (what the figures measured)."""
    last = ""
    for line in (project / "sqitch.plan").read_text().splitlines():
        if line and not line.startswith(("%", "@", "#")):
            last = line.split()[0]
    commit = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    return f"checkout {commit}, plan up to '{last}'"


def machine() -> list[str]:
    load1 = os.getloadavg()
    return [
        f"{platform.node()} · {os.cpu_count()} CPUs · {platform.platform()} · "
        f"Python {platform.python_version()}",
        f"load average at start {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small sizes, a smoke run (~1–2 min)")
    group.add_argument("--big", action="store_true", help="P6 at 10 M outcomes (many minutes)")
    parser.add_argument("--p6-rows", type=int, help="P6's ledger size (overrides the profile)")
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="durability off (fsync, synchronous_commit, full_page_writes): CPU and round-trip"
        " costs only, for a machine whose disk is busy with something else",
    )
    parser.add_argument(
        "--only",
        default="P1,P3,P5,P6,C",
        help="sections to run, comma-separated among P1 (P1+P2), P3 (P3+P4), P5, P6, C",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    if args.big:
        sizes = Sizes(**{**sizes.__dict__, "p6_rows": 10_000_000})
    if args.p6_rows:
        sizes = Sizes(**{**sizes.__dict__, "p6_rows": args.p6_rows})
    aliases = {"P2": "P1", "P4": "P3"}  # measured together with their sibling
    only = {aliases.get(s.strip().upper(), s.strip().upper()) for s in args.only.split(",")}

    report = Report()
    started = time.perf_counter()
    header = machine()
    project = find_project_dir(Path(__file__).resolve().parent)
    settings = dict(DURABLE)
    if args.no_fsync:
        settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
    with LocalCluster(settings=settings) as cluster, ClientPool(8) as pool:
        cluster.create_database("bench_template")
        print(f"deploying the plan from {project} …", file=sys.stderr, flush=True)
        sqitch_deploy(cluster.conninfo("bench_template"), project)
        with cluster.connect("bench_template") as conn:
            version = conn.execute("SHOW server_version").fetchone()
            deployed = conn.execute("SELECT count(*) FROM sqitch.changes").fetchone()
            shown = conn.execute(
                "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)"
                " FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'jit',"
                " 'shared_buffers')"
            ).fetchone()
        header.append(
            f"PostgreSQL {version[0] if version else '?'}; {plan_description(project)},"
            f" {deployed[0] if deployed else '?'} changes deployed;"
            f" {shown[0] if shown else ''}"
        )
        bench = Bench(cluster, sizes, report, pool)
        for key, run in (
            ("P1", bench.p1_p2),
            ("P3", bench.p3_p4),
            ("P5", bench.p5),
            ("P6", bench.p6),
            ("C", bench.client_overhead),
        ):
            if key in only:
                try:
                    run()
                except Exception as exc:  # set-up outside a section
                    report.failed = True
                    traceback.print_exc()
                    report.text(key, "set-up", f"error: {exc!s:.50}", "", False)
    load_end = os.getloadavg()
    header.append(
        f"load average at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f};"
        f" the suite took {time.perf_counter() - started:.0f} s"
        f" ({'quick' if args.quick else 'big' if args.big else 'default'} sizes)"
    )
    print()
    for line in header:
        print(line)
    print()
    print(report.table())
    print()
    for line in report.details:
        print(
            line
            if line[:2] in {"P1", "P2", "P3", "P4", "P5", "P6"} or line.startswith("C ")
            else f"    {line}"
        )
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
